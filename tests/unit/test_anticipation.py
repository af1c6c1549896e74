"""Anticipation's gates: when the caller's words are primed into the LLM's cache, and which pause's words
get a speculative reply. The LLM side and the floor are stand-ins that record what would be sent; the
work itself is tested through the session (test_session_logic.py) and in calls (integration)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from parley.agents.anticipation import Anticipation
from parley.agents.dialogue_state import State
from parley.agents.profile import AgentProfile, Speaker
from parley.agents.stage_timer import SpeculationStats

ADA = Speaker("p1", "Ada")


class Floor:
    def __init__(self, state: State = State.USER_SPEAKING, turn=None, deciding: bool = False) -> None:
        self.state, self.current_turn, self.deciding, self.closed = state, turn, deciding, False


class Ahead:
    """Records the primes and speculative replies that would go to the LLM."""

    def __init__(self) -> None:
        self.primed: list[str] = []
        self.speculated: list[str] = []

    def prime(self, messages, words: str) -> bool:
        messages()
        self.primed.append(words)
        return True

    def speculate(self, pause: int, speaker: str, text: str, messages) -> None:
        self.speculated.append(text)


def _anticipation(settings, floor: Floor, *, transcribing: bool = False, held=None, people: int = 1):
    ahead, stats = Ahead(), SpeculationStats()
    asking = SimpleNamespace(
        unheard_turn_of=lambda speaker: None, prompt_if_asked=lambda words, speaker: [], held=lambda pid: held,
    )
    profile = AgentProfile("Ava", "You are Ava.", "en", "auto", None)  # type: ignore[arg-type]
    anticipation = Anticipation(
        floor, settings=lambda: settings, speech=None, hearing=SimpleNamespace(transcribing=transcribing),  # type: ignore[arg-type]
        asking=asking, ahead=ahead, profile=profile, people=lambda: people, backchannels=["yeah", "uh huh"],  # type: ignore[arg-type]
        stats=stats, log=SimpleNamespace(debug=lambda *a: None),  # type: ignore[arg-type]
    )
    return anticipation, ahead, stats


@pytest.mark.parametrize("floor, transcribing, primed", [
    (Floor(), False, ["What is the capital of France"]),  # the words so far, without Whisper's guessed "?"
    (Floor(State.PAUSED), False, ["What is the capital of France"]),  # over a paused reply: still their words
    (Floor(State.THINKING), False, []),  # the agent has the floor: the LLM is writing its reply
    (Floor(deciding=True), False, []),  # an utterance is being decided: its transcription has the cores
    (Floor(), True, []),  # a transcription is running
    (Floor(turn=SimpleNamespace(active=True, generated_all=False)), False, []),  # a reply is being generated
])
def test_the_words_so_far_are_primed_only_while_the_floor_is_the_callers(settings, floor, transcribing, primed):
    anticipation, ahead, stats = _anticipation(settings, floor, transcribing=transcribing)
    anticipation.prime("What is the capital of France?", ADA)
    assert ahead.primed == primed and stats.primes == len(primed)


@pytest.mark.parametrize("silence_ms, primed", [(0.0, True), (32.0, False)])
def test_no_prime_once_the_caller_has_stopped(settings, silence_ms, primed):
    """An interim transcript that comes after the caller's last word: the pause's own pass is about to stop
    the LLM, and the judgement of the pause's words evaluates them anyway."""
    anticipation, ahead, _ = _anticipation(settings, Floor())
    with anticipation.listening("p1", SimpleNamespace(silence_ms=silence_ms)):  # type: ignore[arg-type]
        anticipation.prime("What is the capital of France?", ADA)
    assert bool(ahead.primed) is primed


@pytest.mark.parametrize("text, held, people, speculated", [
    ("What is the capital of France?", None, 1, True),
    ("Uh huh", None, 1, False),  # a backchannel is no question
    ("What I want to know is,", None, 1, False),  # the words stop on a comma: more is coming
    ("What is the capital of France?", object(), 1, False),  # words held before it: the two are heard as one
    ("What is the capital of France?", None, 3, False),  # a group call, and nobody said the agent's name
    ("Ava, what is the capital of France?", None, 3, True),
])
def test_a_reply_is_speculated_only_on_a_plain_next_question(settings, text, held, people, speculated):
    anticipation, ahead, _ = _anticipation(settings, Floor(), held=held, people=people)
    assert anticipation._may_speculate(text, ADA) is speculated
    busy, _, _ = _anticipation(settings, Floor(turn=SimpleNamespace(active=True)), held=held, people=people)
    assert busy._may_speculate(text, ADA) is False  # someone's reply is under way


def test_words_that_read_whole_reach_the_endpointer_listening_now_and_none_after(settings):
    """``listening`` registers a speaker's endpointer for the words' verdicts while their track is read; a
    later listener for the same speaker stays registered when the earlier one's track ends."""
    anticipation, _, _ = _anticipation(settings, Floor())
    first, second = SimpleNamespace(name="first"), SimpleNamespace(name="second")
    with anticipation.listening("p1", first):  # type: ignore[arg-type]
        assert anticipation._endpointers == {"p1": first}
        with anticipation.listening("p1", second):  # type: ignore[arg-type]
            assert anticipation._endpointers == {"p1": second}
    assert anticipation._endpointers == {}
    outer = anticipation.listening("p1", first)  # type: ignore[arg-type]
    outer.__enter__()
    with anticipation.listening("p1", second):  # type: ignore[arg-type]
        outer.__exit__(None, None, None)  # the earlier track ended while the later one is read
        assert anticipation._endpointers == {"p1": second}
