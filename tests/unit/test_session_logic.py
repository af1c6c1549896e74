"""AgentSession's decisions around its models (stand-ins here; the real models have their own tests):
early transcription reuse, and one caller line per utterance when a question is folded."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import numpy as np
import pytest

from parley.agents.events import CallerTranscript, ReplyTranscript
from parley.agents.endpointer import InterimAudio, SpeechPaused, SpeechStarted, Utterance
from parley.agents.llm.base import ChatMessage
from parley.agents.stage_timer import EarlyTranscriptionStats, SpeculationStats
from parley.agents.profile import Speaker
from parley.agents.reply_turn import Turn
from parley.agents.dialogue_state import State
from parley.agents.session import AgentSession
from parley.server.playout import PlayoutTrack

ADA = Speaker("p1", "Ada")


class StandInModels:
    """Transcribes by table (sample count → text), records every pass; the LLM waits until released."""

    def __init__(self, texts: dict[int, str]) -> None:
        self.texts = texts
        self.passes: list[int] = []
        self.release = asyncio.Event()
        self.asked: list[list] = []
        self.voiced: list[str] = []  # every text synthesized
        self.tts = SimpleNamespace(sample_rate=24_000, synthesize=self._synthesize)
        self.unyielded = 0  # times the session ended the LLM's stop for the voice
        self.llm = SimpleNamespace(stream=self._stream, stop_yielding=self._stop_yielding)
        self.executor = None
        self.early_stt = EarlyTranscriptionStats()
        self.speculation = SpeculationStats()
        self.streams_closed = 0

    def _stop_yielding(self) -> None:
        self.unyielded += 1

    def _synthesize(self, text: str) -> np.ndarray:
        self.voiced.append(text)
        return np.full(2400, 0.2, np.float32)

    async def transcribe(self, samples, language=None, hotwords=None) -> str:
        self.passes.append(samples.size)
        await asyncio.sleep(0.01)
        return self.texts[samples.size]

    async def _stream(self, messages):
        self.asked.append(messages)
        try:
            await self.release.wait()
            yield "Sure."
        finally:
            self.streams_closed += 1


def _session(models: StandInModels, settings) -> tuple[AgentSession, list, PlayoutTrack]:
    emitted: list = []
    playout = PlayoutTrack()
    return AgentSession(models, settings, playout, emitted.append, "agent-x"), emitted, playout  # type: ignore[arg-type]


async def _decided(session: AgentSession, timeout_s: float = 2.0) -> None:
    """Until every utterance handed to ``session`` has been decided (a fixed sleep was flaky under load)."""
    deadline = time.monotonic() + timeout_s
    await asyncio.sleep(0.01)
    while session.deciding and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.01)  # what the decision started (a turn's first steps) gets a turn of the loop


def _utterance(size: int, pause: int | None) -> Utterance:
    return Utterance(np.zeros(size, np.float32), 0.0, 0.0, speech_ms=900, pause=pause)


async def _first_part_held(session: AgentSession) -> None:
    """Ada says a first part (8 000 samples) that reads cut short, and goes on speaking while it is held."""
    from parley.agents.endpointer import SpeechStarted

    session._on_endpoint_event(SpeechStarted(at=0.0), ADA)
    session._on_endpoint_event(Utterance(np.zeros(8_000, np.float32), time.monotonic(), 0.0, 900), ADA)
    await asyncio.sleep(0.3)
    assert session._turn is None  # held for the rest
    session._on_endpoint_event(SpeechStarted(at=0.0), ADA)
    await asyncio.sleep(0.05)


async def test_a_transcript_started_at_the_pause_is_the_final_one(settings):
    models = StandInModels({16_000: "What is the capital of France?"})
    session, emitted, playout = _session(models, settings)
    session._on_endpoint_event(SpeechPaused(np.zeros(16_000, np.float32), pause=1), ADA)
    await asyncio.sleep(0.05)
    session._on_endpoint_event(_utterance(16_000, pause=1), ADA)
    await _decided(session)
    assert models.passes == [16_000]  # one pass, started before the endpoint
    assert models.early_stt.as_dict() == {
        "started": 1, "used": 1, "superseded": 0, "settled": 0, "wasted_s": 0.0, "heard_again": 0, "heard_whole_again": 0,
        "heard_unsure": 0, "unsure_replaced": 0,
    }
    assert session._turn is not None and session._turn.user_text == "What is the capital of France?"
    await session.close()
    playout.stop()


async def test_more_speech_after_the_pause_throws_the_early_transcript_away(settings):
    models = StandInModels({8_000: "What is the", 16_000: "What is the capital of France?"})
    session, emitted, playout = _session(models, settings)
    session._on_endpoint_event(SpeechPaused(np.zeros(8_000, np.float32), pause=1), ADA)
    await asyncio.sleep(0.05)
    session._on_endpoint_event(SpeechPaused(np.zeros(16_000, np.float32), pause=2), ADA)  # they went on
    session._on_endpoint_event(_utterance(16_000, pause=2), ADA)
    await _decided(session)
    assert models.passes == [8_000, 16_000]
    stats = models.early_stt.as_dict()
    assert stats["started"] == 2 and stats["used"] == 1 and stats["superseded"] == 1 and stats["wasted_s"] > 0
    assert session._turn.user_text == "What is the capital of France?"
    await session.close()
    playout.stop()


async def test_an_utterance_cut_at_the_maximum_length_is_transcribed_afresh(settings):
    models = StandInModels({8_000: "So the", 20_000: "So the thing is"})
    session, emitted, playout = _session(models, settings)
    session._on_endpoint_event(SpeechPaused(np.zeros(8_000, np.float32), pause=1), ADA)
    session._on_endpoint_event(_utterance(20_000, pause=None), ADA)
    await _decided(session)
    assert sorted(models.passes) == [8_000, 20_000] and session._turn.user_text == "So the thing is"
    await session.close()
    playout.stop()


async def test_a_folded_question_stays_on_one_caller_line_and_is_heard_whole(settings):
    """The caller pauses, the agent starts a reply nobody hears yet, the caller goes on: the two halves
    become one question, transcribed whole (a fragment alone is misheard: "of Germany?" → "I'm Jeremy."),
    and its transcripts stay on the first half's line (utterance_id)."""
    models = StandInModels({8_000: "What is the capital", 6_000: "I'm Jeremy.", 18_800: "What is the capital of Germany?"})
    session, emitted, playout = _session(models, settings)
    session._on_endpoint_event(_utterance(8_000, pause=None), ADA)
    await _decided(session)
    first_turn = session._turn
    assert first_turn is not None and models.asked  # the reply is being generated, not heard
    session._on_endpoint_event(InterimAudio(np.zeros(6_000, np.float32)), ADA)  # the caller goes on
    await asyncio.sleep(0.05)
    session._on_endpoint_event(_utterance(6_000, pause=None), ADA)
    await asyncio.sleep(0.1)
    interims = [e for e in emitted if isinstance(e, CallerTranscript) and not e.final]
    assert [(i.text, i.utterance_id) for i in interims] == [("What is the capital I'm Jeremy.", first_turn.utterance_id)]
    assert session._turn is not first_turn and session._turn.user_text == "What is the capital of Germany?"
    finals = [e for e in emitted if isinstance(e, CallerTranscript) and e.final]
    assert [f.text for f in finals] == ["What is the capital", "What is the capital of Germany?"]
    assert finals[0].utterance_id == finals[1].utterance_id == first_turn.utterance_id
    assert models.passes == [8_000, 6_000, 6_000, 18_800]  # part one, interim, part two, the whole
    models.release.set()
    await session.close()
    playout.stop()


async def test_a_long_continuation_keeps_what_was_heard_and_is_transcribed_alone(settings):
    """A caller speaking sentence after sentence, pausing between them: each continuation folds into the
    question (nobody heard the reply yet), but the words already heard stay as they were (and as they are
    in the LLM's cache) and only the new audio is transcribed — not everything said so far, again."""
    first, second = "He was not an ill-disposed young man.", "Unless to be rather cold-hearted is to be ill-disposed."
    models = StandInModels({8_000: first, 6_000: second, 18_800: "He was not an old-sposed young man, unless ..."})
    session, emitted, playout = _session(models, settings)
    session._on_endpoint_event(_utterance(8_000, pause=None), ADA)
    await _decided(session)
    first_turn = session._turn
    # While they go on, the words so far are asked about (and primed) as the whole question, said once.
    asked = session.asking.prompt_if_asked(session.asking.so_far(ADA, "Unless to be"), ADA)
    users = [m.content for m in asked if m.role == "user"]
    assert users == [f"{first} Unless to be"], users
    session._on_endpoint_event(_utterance(6_000, pause=None), ADA)
    await asyncio.sleep(0.1)
    assert session._turn is not first_turn and session._turn.user_text == f"{first} {second}"
    assert models.passes == [8_000, 6_000]  # no pass over both parts
    # The reply is asked for the question said once (the first part's own message is gone from the history).
    assert [m.content for m in models.asked[-1] if m.role == "user"] == [f"{first} {second}"]
    finals = [e for e in emitted if isinstance(e, CallerTranscript) and e.final]
    assert [f.utterance_id for f in finals] == [first_turn.utterance_id] * 2
    models.release.set()
    await session.close()
    playout.stop()


async def test_chinese_sentences_are_settled_too_and_joined_without_a_space(settings):
    """The same in a Mandarin room: a sentence of four words' worth of characters (two to a word) ending
    in "。" is kept; the rest is transcribed alone and joined to it as Chinese is written, with no space."""
    from parley.agents.endpointer import SpeechResumed

    zh = settings.model_copy(update={"agent": settings.agent.model_copy(update={"language": "zh"})})
    first = "我下个月要去北京出差。"
    models = StandInModels({16_000: first, 48_000: "请问那里天气怎么样？", 64_000: "我下个月要去北京出差。请问那里天气怎么样？"})
    session, emitted, playout = _session(models, zh)
    session._on_endpoint_event(SpeechPaused(np.zeros(16_000, np.float32), pause=1), ADA)
    session._on_endpoint_event(SpeechResumed(1, silence_ms=600), ADA)
    await asyncio.sleep(0.05)
    session._on_endpoint_event(SpeechPaused(np.zeros(64_000, np.float32), pause=2), ADA)
    await asyncio.sleep(0.05)
    session._on_endpoint_event(_utterance(64_000, pause=2), ADA)
    await _decided(session)
    assert models.passes == [16_000, 48_000]  # the settled sentence was not heard again
    assert session._turn.user_text == "我下个月要去北京出差。请问那里天气怎么样？"
    assert models.early_stt.as_dict()["settled"] == 1
    models.release.set()
    await session.close()
    playout.stop()


@pytest.mark.parametrize("pause_ms, settles", [(600, True), (250, False)])
async def test_sentences_before_a_long_pause_are_kept_and_only_the_rest_is_transcribed(settings, pause_ms, settles):
    """One long utterance (the end-of-turn model kept hearing more to come): after a pause of 400 ms or
    more, words Whisper ended as a sentence stay as they were; the interim and final passes transcribe only
    the audio after them (a shorter pause, or words that stop mid-sentence, are heard again with the rest)."""
    from parley.agents.endpointer import SpeechResumed

    first = "He was not an ill-disposed young man."
    models = StandInModels({
        16_000: first, 40_000: "Unless to be", 48_000: "Unless to be rather selfish.",
        56_000: "He was not an old-sposed young man. Unless to be", 64_000: "He was not an old-sposed young man. Unless to be rather selfish.",
    })
    session, emitted, playout = _session(models, settings)
    session._on_endpoint_event(SpeechPaused(np.zeros(16_000, np.float32), pause=1), ADA)
    session._on_endpoint_event(SpeechResumed(1, silence_ms=pause_ms), ADA)
    await asyncio.sleep(0.05)
    session._on_endpoint_event(InterimAudio(np.zeros(56_000, np.float32)), ADA)
    await asyncio.sleep(0.05)
    session._on_endpoint_event(SpeechPaused(np.zeros(64_000, np.float32), pause=2), ADA)
    await asyncio.sleep(0.05)
    session._on_endpoint_event(_utterance(64_000, pause=2), ADA)
    await _decided(session)
    interim = [e.text for e in emitted if isinstance(e, CallerTranscript) and not e.final]
    stats = models.early_stt.as_dict()
    if settles:
        assert models.passes == [16_000, 40_000, 48_000]
        assert interim == [f"{first} Unless to be"]
        assert session._turn.user_text == f"{first} Unless to be rather selfish."
        # the first pause's pass was kept, not thrown away (/stats, make bench's "Early transcription")
        assert (stats["settled"], stats["superseded"], stats["used"]) == (1, 0, 1)
    else:
        assert models.passes == [16_000, 56_000, 64_000]
        assert session._turn.user_text == "He was not an old-sposed young man. Unless to be rather selfish."
        assert (stats["settled"], stats["superseded"], stats["used"]) == (0, 1, 1)
    assert session.hearing.settled(ADA.participant_id) is None  # the utterance is over: the next one starts afresh
    models.release.set()
    await session.close()
    playout.stop()


async def test_unfinished_words_in_a_continuation_stay_on_the_questions_line(settings):
    """They go on after a question nobody heard the reply to, and stop on "and": those words are held
    for the rest, and everything they say is shown on the first question's line (never a second one)."""
    from parley.agents.endpointer import SpeechStarted

    first = "He was not an ill-disposed young man."
    models = StandInModels({
        8_000: first, 4_000: "Unless to be rather", 6_000: "Unless to be rather cold-hearted and", 3_000: "rather selfish",
        5_000: "rather selfish.", 15_800: "Unless to be rather cold-hearted and rather selfish.",
    })
    session, emitted, playout = _session(models, settings)
    session._on_endpoint_event(_utterance(8_000, pause=None), ADA)
    await _decided(session)
    line = session._turn.utterance_id
    session._on_endpoint_event(SpeechStarted(at=0.0), ADA)
    session._on_endpoint_event(InterimAudio(np.zeros(4_000, np.float32)), ADA)
    await asyncio.sleep(0.05)
    now = time.monotonic()  # (the held words wait from their end for more)
    session._on_endpoint_event(Utterance(np.zeros(6_000, np.float32), now, now, speech_ms=900), ADA)
    await asyncio.sleep(0.05)
    session._on_endpoint_event(SpeechStarted(at=0.0), ADA)  # they go on, as the held words expect
    await asyncio.sleep(0.05)
    session._on_endpoint_event(InterimAudio(np.zeros(3_000, np.float32)), ADA)
    await asyncio.sleep(0.05)
    session._on_endpoint_event(_utterance(5_000, pause=None), ADA)
    await _decided(session)
    shown = [(e.text, e.utterance_id) for e in emitted if isinstance(e, CallerTranscript)]
    assert {utterance_id for _, utterance_id in shown} == {line}, shown
    assert [text for text, _ in shown[1:]] == [
        f"{first} Unless to be rather", f"{first} Unless to be rather cold-hearted and rather selfish",
        f"{first} Unless to be rather cold-hearted and rather selfish.",
    ]
    assert models.passes == [8_000, 4_000, 6_000, 3_000, 5_000, 15_800]  # the held words and the rest heard whole
    assert session._turn.user_text == f"{first} Unless to be rather cold-hearted and rather selfish."
    models.release.set()
    await session.close()
    playout.stop()


async def test_a_folded_question_leaves_an_earlier_question_with_the_same_words_in_the_history(settings):
    models = StandInModels({8_000: "What time is it?", 6_000: "In Tokyo, I mean right now."})
    session, emitted, playout = _session(models, settings)
    earlier = session.remember("user", "What time is it?")  # asked (and answered) before, in the same words
    session.remember("assistant", "It is noon.")
    session._on_endpoint_event(_utterance(8_000, pause=None), ADA)
    await _decided(session)
    session._on_endpoint_event(_utterance(6_000, pause=None), ADA)  # goes on before the reply was heard
    await asyncio.sleep(0.1)
    assert session.history[0] is earlier
    assert [m.content for m in session.history] == ["What time is it?", "It is noon.", "What time is it? In Tokyo, I mean right now."]
    models.release.set()
    await session.close()
    playout.stop()


async def test_separate_questions_get_separate_lines(settings):
    models = StandInModels({8_000: "Hello there.", 6_000: "How are you?"})
    models.release.set()
    session, emitted, playout = _session(models, settings)
    session._on_endpoint_event(_utterance(8_000, pause=None), ADA)
    await asyncio.sleep(0.3)
    session._turn.task.cancel()  # the reply's playout is not what this test is about
    await asyncio.sleep(0.05)
    session._on_endpoint_event(_utterance(6_000, pause=None), ADA)
    await _decided(session)
    finals = [e for e in emitted if isinstance(e, CallerTranscript) and e.final]
    assert len(finals) == 2 and finals[0].utterance_id != finals[1].utterance_id
    await session.close()
    playout.stop()


async def test_words_that_end_mid_sentence_wait_for_the_caller_to_go_on(settings):
    """"What is the capital of?" then more speech: one question, one line, one turn — not two."""
    from parley.agents.endpointer import SpeechStarted

    models = StandInModels({8_000: "What is the capital of?", 6_000: "Australia?", 18_800: "What is the capital of Australia?"})
    session, emitted, playout = _session(models, settings)
    session._on_endpoint_event(SpeechStarted(at=0.0), ADA)
    session._on_endpoint_event(Utterance(np.zeros(8_000, np.float32), time.monotonic(), 0.0, 900), ADA)
    await asyncio.sleep(0.3)
    assert session._turn is None and not models.asked  # held: the words say the caller is not done
    session._on_endpoint_event(SpeechStarted(at=0.0), ADA)  # and they go on
    await asyncio.sleep(0.05)
    session._on_endpoint_event(_utterance(6_000, pause=None), ADA)
    await asyncio.sleep(0.1)
    assert session._turn is not None and session._turn.user_text == "What is the capital of Australia?"
    finals = [e for e in emitted if isinstance(e, CallerTranscript) and e.final]
    assert [f.text for f in finals] == ["What is the capital of Australia?"]
    models.release.set()
    await session.close()
    playout.stop()


async def test_a_whole_pass_that_drops_a_part_gives_way_to_the_parts(settings):
    """Heard as one clip, the two parts came back as the first alone (Whisper tiny.en did this over Opus:
    "How long does it take?" for "How long does it take" + "to boil an egg?"): the question keeps the words
    of both parts instead of losing its end."""

    models = StandInModels({8_000: "How long does it take?", 6_000: "T'boil a nag.", 18_800: "How long does it take?"})

    async def cut_short(messages, words):  # "How long does it take" reads cut short
        return 0.001

    models.llm.sentence_end_probability = cut_short
    session, emitted, playout = _session(models, settings)
    await _first_part_held(session)
    session._on_endpoint_event(_utterance(6_000, pause=None), ADA)
    await _decided(session)
    assert models.passes[-1] == 18_800  # the whole was heard again ...
    assert session._turn is not None and session._turn.user_text == "How long does it take T'boil a nag."  # ... and lost a part
    models.release.set()
    await session.close()
    playout.stop()


async def test_words_held_as_unfinished_are_heard_with_the_rest_at_its_pause(settings):
    """The question's two parts are heard as one when the second part's pause begins, not after its
    endpoint, and the second part is not heard alone at all: one Whisper pass between the caller's last
    word and the reply, where there were two in a row."""

    models = StandInModels({8_000: "How long does it take", 6_000: "to boil an egg?", 18_800: "How long does it take to boil an egg?"})
    judged: list[str] = []

    async def cut_short(messages, words):
        judged.append(words)
        return 0.001 if words.endswith("take") else 0.9

    models.llm.sentence_end_probability = cut_short
    session, emitted, playout = _session(models, settings)
    await _first_part_held(session)
    session._on_endpoint_event(SpeechPaused(np.zeros(6_000, np.float32), pause=1), ADA)
    await asyncio.sleep(0.1)
    assert models.passes == [8_000, 18_800]  # the whole, before the turn is known to be over ...
    assert judged[-1] == "How long does it take to boil an egg"  # ... and whether it reads finished
    early = session.hearing.current(ADA.participant_id)
    assert early.task.cancelled()  # the part alone was not needed
    session._on_endpoint_event(_utterance(6_000, pause=1), ADA)
    await _decided(session)
    assert models.passes == [8_000, 18_800]  # and nothing again after it
    assert judged.count("How long does it take to boil an egg") == 1
    assert session._turn is not None and session._turn.user_text == "How long does it take to boil an egg?"
    models.release.set()
    await session.close()
    playout.stop()


async def test_a_whole_pass_at_the_pause_that_stops_there_asks_for_the_part_alone(settings):
    """The pass over both parts, started at the second part's pause, came back with no more words than
    the first part (Whisper stopped where the caller paused): only then is the second part heard alone,
    and the question keeps the words of both."""

    models = StandInModels({8_000: "How long does it take?", 6_000: "T'boil a nag.", 18_800: "How long does it take?"})

    async def cut_short(messages, words):
        return 0.001

    models.llm.sentence_end_probability = cut_short
    session, emitted, playout = _session(models, settings)
    await _first_part_held(session)
    session._on_endpoint_event(SpeechPaused(np.zeros(6_000, np.float32), pause=1), ADA)
    await asyncio.sleep(0.1)
    assert models.passes == [8_000, 18_800, 6_000]  # the whole first, then the part it lost
    session._on_endpoint_event(_utterance(6_000, pause=1), ADA)
    await _decided(session)
    assert models.passes == [8_000, 18_800, 6_000]
    assert session._turn is not None and session._turn.user_text == "How long does it take T'boil a nag."
    models.release.set()
    await session.close()
    playout.stop()


async def test_a_caller_going_on_after_the_second_part_drops_the_whole_pass_started_at_its_pause(settings):

    models = StandInModels({
        8_000: "Tell me about the", 6_000: "history of", 18_800: "Tell me about the history of",
        9_000: "history of the moon.", 21_800: "Tell me about the history of the moon.",
    })

    async def cut_short(messages, words):
        return 0.001 if not words.endswith("moon") else 0.9

    models.llm.sentence_end_probability = cut_short
    session, emitted, playout = _session(models, settings)
    await _first_part_held(session)
    session._on_endpoint_event(SpeechPaused(np.zeros(6_000, np.float32), pause=1), ADA)
    early = session.hearing.current(ADA.participant_id)
    session._on_endpoint_event(SpeechPaused(np.zeros(9_000, np.float32), pause=2), ADA)  # they went on at once
    await asyncio.sleep(0)
    assert early.whole is not None and early.whole.task.cancelled()
    session._on_endpoint_event(_utterance(9_000, pause=2), ADA)
    await _decided(session)
    assert session._turn is not None and session._turn.user_text == "Tell me about the history of the moon."
    assert 18_800 not in models.passes  # the first pause's whole pass never ran
    models.release.set()
    await session.close()
    playout.stop()


async def test_unfinished_words_are_answered_once_the_silence_runs_out(settings):
    models = StandInModels({8_000: "Tell me about the"})
    fast = settings.model_copy(update={"vad": settings.vad.model_copy(update={"unfinished_hold_ms": 400})})
    session, emitted, playout = _session(models, fast)
    started = time.monotonic()
    session._on_endpoint_event(Utterance(np.zeros(8_000, np.float32), started, started, 900), ADA)
    await asyncio.sleep(0.2)
    assert session._turn is None
    await asyncio.sleep(0.4)
    assert session._turn is not None and session._turn.user_text == "Tell me about the"  # nobody went on
    models.release.set()
    await session.close()
    playout.stop()


async def test_the_llm_stopped_for_a_replys_first_words_goes_on_when_the_caller_speaks_over_them(settings):
    """The voice may have the LLM stopped (``EmbeddedLlm.yielding``) while it synthesizes the first words of
    a reply nobody hears yet; the caller speaking again comes first: the stop ends."""
    from parley.agents.endpointer import SpeechStarted

    models = StandInModels({16_000: "What is the capital of France?"})
    session, emitted, playout = _session(models, settings)
    session._on_endpoint_event(SpeechStarted(at=0.0), ADA)
    assert models.unyielded == 0  # no reply: nothing to end
    session._on_endpoint_event(_utterance(16_000, pause=None), ADA)
    await _decided(session)
    assert session._turn is not None and session._turn.active and not session._turn.audio_started
    session._on_endpoint_event(SpeechStarted(at=0.0), ADA)
    assert models.unyielded == 1
    models.release.set()
    await session.close()
    playout.stop()


async def _misheard_and_held(settings) -> tuple[StandInModels, AgentSession, list, PlayoutTrack]:
    """Ada's question, misheard as words the LLM reads as cut short, is held (400 ms) for her to go on."""
    from parley.agents.endpointer import SpeechStarted

    models = StandInModels({8_000: "Tell me a fun fact about curse."})

    async def cut_short(messages, words):
        return 0.001

    models.llm.sentence_end_probability = cut_short
    fast = settings.model_copy(update={"vad": settings.vad.model_copy(update={"unfinished_hold_ms": 400})})
    session, emitted, playout = _session(models, fast)
    session._on_endpoint_event(SpeechStarted(at=0.0), ADA)
    session._on_endpoint_event(Utterance(np.zeros(8_000, np.float32), time.monotonic(), 0.0, 900, pause=1), ADA)
    await asyncio.sleep(0.2)
    assert session._turn is None  # held
    return models, session, emitted, playout


async def test_words_held_as_unfinished_are_answered_meanwhile_and_the_reply_is_the_turns_if_nobody_goes_on(settings):
    """A misheard question read as cut short waits the hold; its reply is generated during the wait (the
    CPU is idle then), out of sight, so that when nobody went on it is under way instead of only starting."""
    models, session, emitted, playout = await _misheard_and_held(settings)
    assert [m[-1].content for m in models.asked] == ["Tell me a fun fact about curse."]  # asked during the hold ...
    assert not _finals(emitted) and not session.history  # ... and nothing of it shown or kept yet
    await asyncio.sleep(0.4)
    turn = session._turn
    assert turn is not None and turn.user_text == "Tell me a fun fact about curse."
    assert turn.speculative and len(models.asked) == 1  # the reply started in the hold, not a second request
    models.release.set()
    await asyncio.sleep(0.1)
    assert turn.reply == "Sure." and models.speculation.as_dict()["used"] == 1
    await session.close()
    playout.stop()


async def test_the_first_words_of_a_reply_to_held_words_are_voiced_during_the_hold_once(settings):
    models, session, emitted, playout = await _misheard_and_held(settings)
    models.release.set()  # the LLM answers while the turn still waits
    await asyncio.sleep(0.1)
    assert models.voiced == ["Sure."] and session._turn is None and playout.buffer.pushed == 0  # voiced, not played
    await asyncio.sleep(0.4)
    turn = session._turn
    assert turn is not None and turn.speculative
    await asyncio.sleep(0.1)
    assert models.voiced == ["Sure."] and playout.buffer.pushed > 0  # the turn spoke the audio voiced ahead
    assert turn.reply == "Sure."
    await session.close()
    playout.stop()


async def test_a_reply_to_held_words_is_dropped_without_a_trace_when_the_caller_goes_on(settings):
    from parley.agents.endpointer import SpeechStarted

    models, session, emitted, playout = await _misheard_and_held(settings)
    assert len(models.asked) == 1
    session._on_endpoint_event(SpeechStarted(at=0.0), ADA)  # she goes on
    await _decided(session)
    models.release.set()  # (an LLM that had still answered: nothing of it is voiced)
    await asyncio.sleep(0.1)
    assert models.voiced == [] and playout.buffer.pushed == 0
    stats = models.speculation.as_dict()
    assert stats["cancelled"] == 1 and stats["used"] == 0 and models.streams_closed == 1  # the LLM stream was closed
    assert session._turn is None and not _finals(emitted) and not session.history
    assert session.asking.held(ADA.participant_id) is not None  # her words wait for the rest, as before
    await session.close()
    playout.stop()


async def _drain(playout: PlayoutTrack) -> None:
    while True:
        await playout.recv()


async def _held_and_heard_again(settings, again: str, went_on: bool = False) -> tuple[StandInModels, AgentSession, list, PlayoutTrack]:
    """Ada's question, misheard as words the LLM reads as cut short ("…about curse", 0.001), held (600 ms)
    and heard again by the larger ear as ``again`` (50 ms later); she goes on 0.3 s in if ``went_on``."""
    from parley.agents.endpointer import SpeechStarted

    models = StandInModels({8_000: "Tell me a fun fact about curse."})
    heard: list[int] = []

    async def hear_again(samples):
        heard.append(samples.size)
        await asyncio.sleep(0.05)
        return again

    async def sentence_end(messages, words):
        return 0.001 if "curse" in words or words.endswith("about") else 0.8

    models.hears_again, models.hear_again, models.heard = True, hear_again, heard  # type: ignore[attr-defined]
    models.llm.sentence_end_probability = sentence_end
    slow = settings.model_copy(update={"vad": settings.vad.model_copy(update={"unfinished_hold_ms": 600})})
    session, emitted, playout = _session(models, slow)
    session._on_endpoint_event(SpeechStarted(at=0.0), ADA)
    session._on_endpoint_event(Utterance(np.zeros(8_000, np.float32), time.monotonic(), 0.0, 900, pause=1), ADA)
    if went_on:
        await asyncio.sleep(0.3)
        session._on_endpoint_event(SpeechStarted(at=time.monotonic()), ADA)
    return models, session, emitted, playout


async def test_held_words_the_larger_ear_hears_whole_are_answered_at_once(settings):
    """Words held as cut short are heard again (stt.hear_held_again); other words that read whole end the
    hold at once and are the question: shown, kept and answered — the misheard ones are nowhere."""
    models, session, emitted, playout = await _held_and_heard_again(settings, "Tell me a fun fact about cats.")
    await asyncio.sleep(0.25)  # well inside the 600 ms hold
    turn = session._turn
    assert turn is not None and turn.user_text == "Tell me a fun fact about cats."
    assert models.heard == [8_000]  # the utterance's own audio, heard once more
    assert [m[-1].content for m in models.asked] == ["Tell me a fun fact about cats."]  # no reply to "curse" was asked
    assert models.early_stt.as_dict()["heard_again"] == 1 and models.early_stt.as_dict()["heard_whole_again"] == 1
    assert [e.text for e in _finals(emitted) if isinstance(e, CallerTranscript)] == ["Tell me a fun fact about cats."]
    models.release.set()
    await asyncio.sleep(0.1)
    assert [m.content for m in session.history if m.role == "user"] == ["Tell me a fun fact about cats."]
    await session.close()
    playout.stop()


@pytest.mark.parametrize("again", ["Tell me a fun fact about curse", "Tell me a fun fact about", ""])
async def test_held_words_heard_again_alike_or_cut_short_wait_the_hold(settings, again):
    """The larger ear hearing the same words, words still cut short, or nothing: the hold goes on, and its
    reply (to the words first heard) is written during it and is the turn's when nobody went on."""
    models, session, emitted, playout = await _held_and_heard_again(settings, again)
    await asyncio.sleep(0.3)
    assert session._turn is None  # still held
    assert [m[-1].content for m in models.asked] == ["Tell me a fun fact about curse."]  # answered meanwhile
    await asyncio.sleep(0.45)
    turn = session._turn
    assert turn is not None and turn.user_text == "Tell me a fun fact about curse." and turn.speculative
    assert models.early_stt.as_dict()["heard_whole_again"] == 0
    models.release.set()
    await session.close()
    playout.stop()


async def test_a_caller_going_on_while_held_words_are_heard_again_carries_them_on(settings):
    models, session, emitted, playout = await _held_and_heard_again(settings, "Tell me a fun fact about", went_on=True)
    await asyncio.sleep(0.5)
    assert session._turn is None and session.asking.held(ADA.participant_id) is not None  # carried, not answered
    assert not _finals(emitted) and not session.history
    models.release.set()
    await session.close()
    playout.stop()


@pytest.mark.parametrize("second_ear", [True, False])
async def test_a_reply_started_at_the_pause_on_words_read_cut_short_waits_for_the_second_ear(settings, second_ear):
    """A pause's words read as cut short ("…about curse", 0.001) are heard again by the larger ear before
    they are answered: the reply started on them at the pause is dropped before it asks the LLM (it would
    hold the call's slot of the LLM in front of the judgement of what that ear hears). Without a second ear
    it goes on: it is the reply the hold ends on if nobody goes on."""
    models = StandInModels({16_000: "Tell me a fun fact about curse."})

    async def sentence_end(messages, words):
        return 0.001

    async def hear_again(samples):
        return ""

    models.llm.sentence_end_probability = sentence_end
    if second_ear:
        models.hears_again, models.hear_again = True, hear_again  # type: ignore[attr-defined]
    session, emitted, playout = _session(models, settings)
    session._on_endpoint_event(SpeechStarted(at=0.0), ADA)
    session._on_endpoint_event(SpeechPaused(np.zeros(16_000, np.float32), pause=1), ADA)
    await asyncio.sleep(0.1)
    assert session._ahead.speculating(ADA.participant_id, 1) is not second_ear
    assert [m[-1].content for m in models.asked] == ([] if second_ear else ["Tell me a fun fact about curse."])
    assert models.speculation.started == 1 and models.speculation.cancelled == int(second_ear)
    models.release.set()
    await session.close()
    playout.stop()


def _finals(emitted: list) -> list:
    return [e for e in emitted if isinstance(e, (CallerTranscript, ReplyTranscript)) and e.final]


async def test_a_reply_started_at_the_pause_is_the_turns_when_the_turn_ends_there(settings):
    """The end-of-turn model hesitates; the early transcript is ready: the reply starts now, and the
    turn committed in that pause takes it instead of asking the LLM again."""
    from parley.agents.endpointer import SpeechStarted

    models = StandInModels({16_000: "What is the capital of France?"})
    session, emitted, playout = _session(models, settings)
    session._on_endpoint_event(SpeechStarted(at=0.0), ADA)
    session._on_endpoint_event(SpeechPaused(np.zeros(16_000, np.float32), pause=1), ADA)
    await asyncio.sleep(0.05)
    assert len(models.asked) == 1 and models.asked[0][-1].content == "What is the capital of France?"
    assert session._turn is None and not session.history and not _finals(emitted)  # nothing shown yet
    session._on_endpoint_event(_utterance(16_000, pause=1), ADA)
    await _decided(session)
    turn = session._turn
    assert turn is not None and turn.speculative and len(models.asked) == 1  # the same stream, not a new one
    models.release.set()
    await asyncio.sleep(0.1)  # nobody plays the audio out here: the turn stays in its playout
    assert models.speculation.as_dict()["used"] == 1 and models.speculation.cancelled == 0
    assert turn.reply == "Sure." and [m.content for m in session.history] == ["What is the capital of France?"]
    assert playout.buffer.pushed > 0
    await session.close()
    playout.stop()


async def _speculating_at_a_pause(settings, text: str, size: int, slow_voice: bool = False):
    """A caller who paused after ``text`` (``size`` samples): its reply started, the LLM not yet answering."""
    from parley.agents.endpointer import SpeechStarted

    models = StandInModels({size: text})
    models.tts.slow = slow_voice
    session, emitted, playout = _session(models, settings)
    session._on_endpoint_event(SpeechStarted(at=0.0), ADA)
    session._on_endpoint_event(SpeechPaused(np.zeros(size, np.float32), pause=1), ADA)
    await asyncio.sleep(0.05)
    assert len(models.asked) == 1 and session._turn is None
    return models, session, emitted, playout


async def test_the_first_words_of_a_reply_started_at_the_pause_are_voiced_before_the_turn_ends_there(settings):
    """Words that read whole end the turn a fixed silence into the pause, often after the reply's first words
    are written: their voice is synthesized meanwhile (not played), and the turn plays that audio."""
    models, session, emitted, playout = await _speculating_at_a_pause(settings, "What is the capital of France?", 16_000)
    models.release.set()  # the reply is written before the turn ends
    await asyncio.sleep(0.05)
    assert models.voiced == ["Sure."] and playout.buffer.pushed == 0  # voiced, not played
    assert session._turn is None and not session.history and not _finals(emitted)
    session._on_endpoint_event(_utterance(16_000, pause=1), ADA)
    await _decided(session)
    await asyncio.sleep(0.1)
    turn = session._turn
    assert turn is not None and turn.speculative and turn.reply == "Sure."
    assert models.voiced == ["Sure."] and playout.buffer.pushed > 0  # the audio voiced ahead, not a second synthesis
    await session.close()
    playout.stop()


async def test_a_reply_taken_before_its_first_words_are_written_voices_them_itself_once(settings):
    models, session, emitted, playout = await _speculating_at_a_pause(settings, "What is the capital of France?", 16_000)
    session._on_endpoint_event(_utterance(16_000, pause=1), ADA)  # the turn ends first
    await _decided(session)
    assert session._turn is not None and session._turn.speculative and models.voiced == []
    models.release.set()
    await asyncio.sleep(0.1)
    assert models.voiced == ["Sure."] and playout.buffer.pushed > 0
    await session.close()
    playout.stop()


async def test_a_slow_voice_does_not_voice_a_reply_ahead_in_a_pause(settings):
    """Kokoro shares the LLM's two cores: in a pause still being decided it would slow the reply itself."""
    models, session, emitted, playout = await _speculating_at_a_pause(settings, "What is the capital of France?", 16_000, slow_voice=True)
    models.release.set()
    await asyncio.sleep(0.05)
    assert models.voiced == []
    session._on_endpoint_event(_utterance(16_000, pause=1), ADA)
    await _decided(session)
    await asyncio.sleep(0.1)
    assert models.voiced == ["Sure."] and playout.buffer.pushed > 0
    await session.close()
    playout.stop()


async def test_a_reply_voiced_ahead_leaves_no_sound_when_the_caller_goes_on(settings):
    from parley.agents.endpointer import SpeechResumed

    models, session, emitted, playout = await _speculating_at_a_pause(settings, "Tell me a story.", 8_000)
    models.release.set()
    await asyncio.sleep(0.05)
    assert models.voiced == ["Sure."]  # voiced ahead ...
    session._on_endpoint_event(SpeechResumed(pause=1), ADA)  # ... and the caller goes on
    await asyncio.sleep(0.05)
    assert models.speculation.cancelled == 1 and playout.buffer.pushed == 0
    assert session._turn is None and not session.history and not _finals(emitted)
    await session.close()
    playout.stop()


async def test_a_speculative_reply_leaves_no_trace_when_the_caller_goes_on(settings):
    from parley.agents.endpointer import SpeechResumed, SpeechStarted

    models = StandInModels({8_000: "Tell me a story.", 16_000: "Tell me a story about a dragon."})
    session, emitted, playout = _session(models, settings)
    session._on_endpoint_event(SpeechStarted(at=0.0), ADA)
    session._on_endpoint_event(SpeechPaused(np.zeros(8_000, np.float32), pause=1), ADA)
    await asyncio.sleep(0.05)
    assert len(models.asked) == 1  # started on "Tell me a story."
    session._on_endpoint_event(SpeechResumed(pause=1), ADA)  # the caller goes on
    await asyncio.sleep(0.05)
    stats = models.speculation.as_dict()
    assert stats["cancelled"] == 1 and stats["wasted_s"] > 0 and models.streams_closed == 1  # the LLM stream was closed
    session._on_endpoint_event(SpeechPaused(np.zeros(16_000, np.float32), pause=2), ADA)
    await asyncio.sleep(0.05)
    session._on_endpoint_event(_utterance(16_000, pause=2), ADA)
    await _decided(session)
    assert session._turn.speculative and len(models.asked) == 2
    models.release.set()
    await asyncio.sleep(0.1)
    texts = [e.text for e in emitted if isinstance(e, (CallerTranscript, ReplyTranscript))]
    assert "Tell me a story." not in texts and [f.text for f in _finals(emitted) if isinstance(f, CallerTranscript)] == ["Tell me a story about a dragon."]
    assert [m.content for m in session.history] == ["Tell me a story about a dragon."] and session._turn.reply == "Sure."
    assert models.speculation.as_dict()["used"] == 1
    await session.close()
    playout.stop()


async def test_a_speculative_reply_is_not_used_for_another_question(settings):
    """The question became something else before the turn started (a held first part joined it): the
    reply started on the early words is cancelled and the LLM is asked the real question."""
    from parley.agents.endpointer import SpeechStarted

    models = StandInModels({16_000: "What is the capital of France?"})
    session, emitted, playout = _session(models, settings)
    session._on_endpoint_event(SpeechStarted(at=0.0), ADA)
    session._on_endpoint_event(SpeechPaused(np.zeros(16_000, np.float32), pause=1), ADA)
    await asyncio.sleep(0.05)
    session.history.append(ChatMessage(role="user", content="Bob: hello"))  # the conversation changed meanwhile
    session._on_endpoint_event(_utterance(16_000, pause=1), ADA)
    await _decided(session)
    assert not session._turn.speculative and len(models.asked) == 2 and models.speculation.cancelled == 1
    models.release.set()
    await session.close()
    playout.stop()


async def test_closing_the_session_cancels_a_speculative_reply(settings):
    from parley.agents.endpointer import SpeechStarted

    models = StandInModels({16_000: "What is the capital of France?"})
    session, emitted, playout = _session(models, settings)
    session._on_endpoint_event(SpeechStarted(at=0.0), ADA)
    session._on_endpoint_event(SpeechPaused(np.zeros(16_000, np.float32), pause=1), ADA)
    await asyncio.sleep(0.05)
    await session.close()
    await asyncio.sleep(0.01)
    assert models.speculation.cancelled == 1 and models.streams_closed == 1
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("speculative-reply")]
    playout.stop()


async def test_the_callers_words_so_far_go_into_the_llm_cache_and_the_reply_waits_for_that(settings):
    """An interim transcript primes the LLM with the conversation and the words so far (without the
    punctuation Whisper guessed); the real request is made only once the priming request is done."""
    from parley.agents.endpointer import SpeechStarted

    models = StandInModels({6_000: "What is the capital.", 16_000: "What is the capital of France?"})
    order: list[str] = []
    primed = asyncio.Event()

    async def prime(messages, words=None):
        assert words is not None and messages[-1].content.startswith(words)  # primed only up to the words
        order.append(f"prime {messages[-1].content!r}")
        await primed.wait()

    async def stream(messages):
        order.append(f"ask {messages[-1].content!r}")
        yield "Paris."

    models.llm = SimpleNamespace(stream=stream, prime=prime)
    priming = settings.model_copy(update={"agent": settings.agent.model_copy(update={"prime_llm": True})})
    session, emitted, playout = _session(models, priming)
    session._on_endpoint_event(SpeechStarted(at=0.0), ADA)  # the conversation so far (nothing yet)
    primed.set()
    await asyncio.sleep(0.02)
    primed.clear()
    session._on_endpoint_event(InterimAudio(np.zeros(6_000, np.float32)), ADA)
    await asyncio.sleep(0.05)
    assert order == ["prime ''", "prime 'What is the capital'"]
    session._on_endpoint_event(_utterance(16_000, pause=None), ADA)
    await asyncio.sleep(0.1)
    assert order[-1] == "prime 'What is the capital'"  # the reply waits for the priming request
    primed.set()
    await asyncio.sleep(0.05)
    assert order[-2] == "ask 'What is the capital of France?'" and models.speculation.primes == 2
    # The reply is whole: the conversation with it goes into the cache for the next question, while it plays.
    assert order[-1] == "prime ''" and models.speculation.after_reply_primes == 1
    await session.close()
    playout.stop()


async def test_the_conversation_with_the_reply_is_primed_once_the_voice_has_synthesized_it(settings):
    """A short reply is whole before a slow voice (Kokoro, Mandarin) has synthesized it: the prime of the
    conversation with it (for the next question) waits for the voice, instead of taking the two cores
    from it while the caller waits for the first words."""
    import threading

    models = StandInModels({16_000: "What is the capital of France?"})
    voice_free = threading.Event()

    def slow_synthesize(text: str) -> np.ndarray:
        voice_free.wait(5)
        return np.full(2400, 0.2, np.float32)

    primes: list[str] = []

    async def prime(messages, words=None):
        primes.append(messages[-1].content)

    async def stream(messages):
        yield "Paris."

    models.tts = SimpleNamespace(sample_rate=24_000, synthesize=slow_synthesize)
    models.llm = SimpleNamespace(stream=stream, prime=prime)
    priming = settings.model_copy(update={"agent": settings.agent.model_copy(update={"prime_llm": True})})
    session, emitted, playout = _session(models, priming)
    session._on_endpoint_event(_utterance(16_000, pause=None), ADA)
    await asyncio.sleep(0.3)
    turn = session.current_turn
    assert turn is not None and turn.generated_all and models.speculation.after_reply_primes == 0  # whole, not voiced
    voice_free.set()
    await asyncio.sleep(0.2)
    assert models.speculation.after_reply_primes == 1 and primes == [""]
    await session.close()
    playout.stop()


async def test_a_reply_is_held_when_the_caller_finished_more_words_before_it_was_ready(settings):
    """The second part of a question ends (and is committed) while the first part is still being
    transcribed: the first part's reply must not play — both become one question on one line (seen in
    CI on a slow machine: "What is the capital?" answered, then "of Germany?" heard alone as "I'm Jeremy.")."""
    class SlowSecondPart(StandInModels):
        async def transcribe(self, samples, language=None, hotwords=None) -> str:
            if samples.size == 6_000:
                await asyncio.sleep(0.4)  # long enough for the first part's reply to be played otherwise
            return await super().transcribe(samples, language, hotwords)

    models = SlowSecondPart({8_000: "What is the capital", 6_000: "I'm Jeremy.", 18_800: "What is the capital of Germany?"})
    models.release.set()  # the LLM answers at once
    session, emitted, playout = _session(models, settings)
    listener = asyncio.create_task(_drain(playout))  # a caller receiving the agent's audio
    session._on_endpoint_event(_utterance(8_000, pause=None), ADA)
    session._on_endpoint_event(_utterance(6_000, pause=None), ADA)  # before the first is transcribed
    await asyncio.sleep(0.8)
    listener.cancel()
    first, second = session.turns[0], session._turn
    assert first.dropped and not first.audio_started  # held paused, then folded: nothing of it was heard
    assert second is not first and second.user_text == "What is the capital of Germany?"
    finals = [e for e in emitted if isinstance(e, CallerTranscript) and e.final]
    assert [f.text for f in finals] == ["What is the capital", "What is the capital of Germany?"]
    assert finals[0].utterance_id == finals[1].utterance_id  # one line
    models.release.set()
    await session.close()
    playout.stop()


async def _sounded(session: AgentSession, playout: PlayoutTrack, seconds: float = 0.5, timeout_s: float = 5.0) -> None:
    """Until the current reply has sounded for ``seconds`` (so the caller has heard it: not ``TALKED_OVER_S``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        turn = session._turn
        if turn is not None and turn.audio_started and turn.segments:
            if playout.buffer.played - turn.segments[0].start >= seconds * 48_000:
                return
        await asyncio.sleep(0.02)
    raise AssertionError("the reply did not sound")


def _agent_talking(texts: dict[int, str], settings) -> tuple[AgentSession, list, PlayoutTrack, StandInModels]:
    models = StandInModels(texts)
    models.tts = SimpleNamespace(sample_rate=24_000, synthesize=lambda text: np.full(120_000, 0.2, np.float32))  # 5 s
    models.release.set()
    session, emitted, playout = _session(models, settings)
    return session, emitted, playout, models


@pytest.mark.parametrize(("first", "speech_ms", "second_ends_first"), [
    ("Um.", 200, False),  # short, misheard: alone it would resume the agent
    ("up", 400, False),  # long enough to interrupt: alone it would start a turn of its own, on a line of its own
    ("up", 400, True),  # ... and the rest ended before "up" was decided
])
async def test_a_word_over_the_agent_and_more_at_once_are_one_utterance(settings, first, speech_ms, second_ends_first):
    """"Stop, what is the capital of France?" over the agent's voice: the VAD may end an utterance at the
    comma, and "Stop" alone is often misheard. Followed at once by more speech, both are heard as one:
    one interruption, one line, the whole text."""
    from parley.agents.endpointer import SpeechStarted

    session, emitted, playout, models = _agent_talking(
        {8_000: "Tell me a story.", 3_200: first, 9_600: "What is the capital of France?",
         3_200 + 4_800 + 9_600: "Stop, what is the capital of France?"}, settings)
    listener = asyncio.create_task(_drain(playout))
    session._on_endpoint_event(_utterance(8_000, pause=None), ADA)
    await _sounded(session, playout)
    story = session._turn
    assert story is not None and story.audio_started
    session._on_endpoint_event(SpeechStarted(at=0.0), ADA)
    session._on_endpoint_event(Utterance(np.zeros(3_200, np.float32), time.monotonic(), 0.0, speech_ms=speech_ms), ADA)
    if not second_ends_first:
        await asyncio.sleep(0.1)
    session._on_endpoint_event(SpeechStarted(at=0.0), ADA)  # they go on
    if not second_ends_first:
        await asyncio.sleep(0.05)
        assert story.active and session.state == State.PAUSED  # not resumed, not interrupted on the first word
    session._on_endpoint_event(_utterance(9_600, pause=None), ADA)
    await asyncio.sleep(0.2)
    listener.cancel()
    assert story.interrupted_at is not None
    assert session._turn is not story and session._turn.user_text == "Stop, what is the capital of France?"
    callers = [e for e in emitted if isinstance(e, CallerTranscript) and e.final]
    assert [c.text for c in callers] == ["Tell me a story.", "Stop, what is the capital of France?"]
    await session.close()
    playout.stop()


async def _story_begun(settings) -> tuple[AgentSession, list, PlayoutTrack, asyncio.Task[None], Turn]:
    """Ada asks for a story, and its reply has just begun to sound (she will go on: "About a dragon …")."""
    session, emitted, playout, _ = _agent_talking({8_000: "Tell me a story.", 9_600: "About a dragon who learns to fly."}, settings)
    listener = asyncio.create_task(_drain(playout))
    session._on_endpoint_event(_utterance(8_000, pause=None), ADA)
    deadline = time.monotonic() + 5
    while not (session._turn is not None and session._turn.audio_started) and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    story = session._turn
    assert story is not None and story.audio_started
    return session, emitted, playout, listener, story


@pytest.mark.parametrize("confirmed_late", [False, True])
async def test_a_caller_who_goes_on_as_the_reply_begins_had_not_heard_it(settings, confirmed_late):
    """Someone reading sentence after sentence: the agent's first syllable and their next sentence begin
    together (within TALKED_OVER_S of its first sound). That is a continuation, not a barge-in: the reply is
    withdrawn (nothing heard), both parts are one question on one line, and no reply enters the history.
    ``confirmed_late``: at a call's start the echo canceller is still learning, so an onset over the agent
    waits to be confirmed (it may be the agent's own voice); it is still judged where it began (judged at
    its confirmation, the reply was interrupted instead, and a monologue's first pause got 3 caller lines)."""
    from parley.agents.endpointer import SpeechConfirmed, SpeechStarted
    from parley.agents.events import ReplyInterrupted

    session, emitted, playout, listener, story = await _story_begun(settings)
    # its first sound and their next sentence, together
    session._on_endpoint_event(SpeechStarted(at=0.0, confirm_first=confirmed_late), ADA)
    if confirmed_late:
        await asyncio.sleep(0.4)  # confirmed once it lasted: the reply has sounded longer than TALKED_OVER_S by now
        session._on_endpoint_event(SpeechConfirmed(at=0.4), ADA)
    assert story.talked_over and session.state == State.PAUSED
    session._on_endpoint_event(_utterance(9_600, pause=None), ADA)
    await _decided(session)
    listener.cancel()
    assert story.dropped and story.interrupted_at is None
    assert session._turn is not story and session._turn.user_text == "Tell me a story. About a dragon who learns to fly."
    assert [e.heard_text for e in emitted if isinstance(e, ReplyInterrupted)] == [""]  # withdrawn, nothing heard
    finals = [e for e in emitted if isinstance(e, CallerTranscript) and e.final]
    assert len({f.utterance_id for f in finals}) == 1, finals  # one line
    assert story.assistant_message is None  # nothing of the withdrawn reply is remembered, and its question once
    assert [m.content for m in session.history if m.role == "user"] == ["Tell me a story. About a dragon who learns to fly."]
    await session.close()
    playout.stop()


@pytest.mark.parametrize(("confirm_first", "gap_s", "together"), [
    (False, 0.45, True), (True, 0.45, True),  # the blip began before they could have heard the reply
    (False, 0.75, False),  # too long after it: this speech began now, when the reply had been heard
])
async def test_speech_soon_after_a_blip_began_where_the_blip_did(settings, confirm_first, gap_s, together):
    """A reader's "Un-" … "less to be": the start of their next sentence, too short to count, is
    discarded, and the rest comes a moment later, when the reply has sounded longer than TALKED_OVER_S.
    They began before they could have heard it: the reply is withdrawn and both parts are one question
    (one line), as when their speech begins with the reply's first sound."""
    from parley.agents.endpointer import SpeechConfirmed, SpeechDiscarded, SpeechStarted

    session, emitted, playout, listener, story = await _story_begun(settings)
    session._on_endpoint_event(SpeechStarted(at=0.0, confirm_first=confirm_first), ADA)
    session._on_endpoint_event(SpeechDiscarded(at=0.0), ADA)
    assert session._turn is story and story.active  # a blip: the reply goes on
    await asyncio.sleep(gap_s)
    session._on_endpoint_event(SpeechStarted(at=0.0, confirm_first=confirm_first), ADA)
    if confirm_first:
        session._on_endpoint_event(SpeechConfirmed(at=0.0), ADA)
    assert story.talked_over is together and session.state == State.PAUSED
    if together:
        session._on_endpoint_event(_utterance(9_600, pause=None), ADA)
        await _decided(session)
        assert story.dropped and story.interrupted_at is None
        assert session._turn.user_text == "Tell me a story. About a dragon who learns to fly."
        finals = [e for e in emitted if isinstance(e, CallerTranscript) and e.final]
        assert len({f.utterance_id for f in finals}) == 1, finals  # one line
    listener.cancel()
    await session.close()
    playout.stop()


async def test_a_lone_backchannel_over_the_agent_resumes_it(settings):
    session, emitted, playout, models = _agent_talking({8_000: "Tell me a story.", 3_200: "Mhm."}, settings)
    listener = asyncio.create_task(_drain(playout))
    session._on_endpoint_event(_utterance(8_000, pause=None), ADA)
    await _sounded(session, playout)
    story = session._turn
    from parley.agents.endpointer import SpeechStarted

    session._on_endpoint_event(SpeechStarted(at=0.0), ADA)
    session._on_endpoint_event(Utterance(np.zeros(3_200, np.float32), time.monotonic(), 0.0, speech_ms=400), ADA)
    await asyncio.sleep(1.0)  # nothing more from the caller
    listener.cancel()
    assert story.active and story.interrupted_at is None and session._turn is story
    assert [c.text for c in emitted if isinstance(c, CallerTranscript) and c.final][-1] == "Mhm."
    await session.close()
    playout.stop()


async def test_while_the_echo_canceller_learns_the_agent_stops_only_for_speech_that_lasts(settings):
    """An onset over the agent while the caller's echo canceller is still learning may be the agent's own
    voice: a blip never stops it; speech that lasts min_speech_ms does (a real barge-in, a little later)."""
    from parley.agents.endpointer import SpeechConfirmed, SpeechDiscarded, SpeechStarted
    from parley.agents.events import StateChanged

    session, emitted, playout, models = _agent_talking({8_000: "Tell me a story."}, settings)
    listener = asyncio.create_task(_drain(playout))
    session._on_endpoint_event(_utterance(8_000, pause=None), ADA)
    await _sounded(session, playout)
    story = session._turn
    assert story is not None and story.audio_started and session.state == State.SPEAKING
    session._on_endpoint_event(SpeechStarted(at=0.0, confirm_first=True), ADA)
    session._on_endpoint_event(SpeechDiscarded(at=0.1), ADA)  # echo that leaked: a blip
    await asyncio.sleep(0.05)
    states = [e.state for e in emitted if isinstance(e, StateChanged)]
    assert session.state == State.SPEAKING and State.PAUSED not in states, states  # the caller saw no stop
    session._on_endpoint_event(SpeechStarted(at=0.2, confirm_first=True), ADA)
    assert session.state == State.SPEAKING
    session._on_endpoint_event(SpeechConfirmed(at=0.4), ADA)  # it lasted: the caller is talking
    assert session.state == State.PAUSED and story.active
    listener.cancel()
    await session.close()
    playout.stop()


@pytest.mark.parametrize("score, marked", [(0.61, [1]), (0.1, []), (None, [])])
@pytest.mark.parametrize("speaking", [True, False])
async def test_words_that_read_whole_tell_the_endpointer_to_end_the_pause_soon(settings, score, marked, speaking):
    """The LLM reads the pause's words as a whole sentence (≥ vad.text_turn_done_threshold): the caller's
    endpointer hears of it, for that pause; a middling score or no score leaves the pause to the voice
    (``words_heard``: the end-of-turn model, which waited for the words since the pause began, decides).
    Where no reply can be started on the words (the caller does not have the floor), the model does not
    wait for them, and is asked even when they read whole."""
    models = StandInModels({16_000: "How many continents are there?"})

    async def sentence_end_probability(messages, words):
        return score

    models.llm.sentence_end_probability = sentence_end_probability
    session, emitted, playout = _session(models, settings)
    told: list[int] = []
    awaited: list[int] = []
    heard: list[int] = []
    endpointer = SimpleNamespace(words_done=told.append, await_words=awaited.append, words_heard=heard.append, silence_ms=0.0)
    with session._anticipation.listening(ADA.participant_id, endpointer):  # type: ignore[arg-type]
        if speaking:
            session._on_endpoint_event(SpeechStarted(at=0.0), ADA)
        session._on_endpoint_event(SpeechPaused(np.zeros(16_000, np.float32), pause=1), ADA)
        await asyncio.sleep(0.1)
    assert settings.vad.text_turn_done_threshold == 0.3 and told == marked
    assert awaited == ([1] if speaking else [])
    assert heard == ([] if marked and speaking else [1])  # (read whole, their reply under way: not asked)
    assert session._ahead.speculating(ADA.participant_id, 1) == speaking
    models.release.set()
    await session.close()
    playout.stop()


async def test_a_longer_chunk_is_given_longer_to_synthesize(settings, monkeypatch):
    """A slow voice is not a hung one: the synthesis timeout grows with the chunk's words (Kokoro took
    7–21 s for 3–8 s of Mandarin on a slow host), and a voice slower than that still fails the turn."""
    from parley.agents import speech_models
    from parley.core.errors import BackendError

    settings = settings.model_copy(deep=True)
    settings.agent.tts_timeout_s = 0.1
    monkeypatch.setattr(speech_models, "SYNTHESIS_S_PER_WORD", 0.05)
    session, _, playout = _session(StandInModels({}), settings)

    def slow_voice(text: str) -> np.ndarray:
        time.sleep(0.3)
        return np.zeros(2400, np.float32)

    voice = SimpleNamespace(synthesize=slow_voice)
    assert (await session.speech.synthesize(voice, "Once upon a time there lived a dragon in the hills.")).size == 2400  # 0.65 s
    with pytest.raises(BackendError, match="speech synthesis took over"):
        await session.speech.synthesize(voice, "Sure.")  # 0.15 s
    await session.close()
    playout.stop()


async def test_interim_passes_take_at_most_half_of_the_stt(settings):
    """A pass of 0.2 s and audio for one every 0.25 s: every other one is skipped, so the pass at the
    pause never waits long behind an interim one (Whisper base took 2 s a pass on a slow host)."""
    from parley.agents.endpointer import SpeechStarted

    class SlowStt(StandInModels):
        async def transcribe(self, samples, language=None, hotwords=None) -> str:
            self.passes.append(samples.size)
            await asyncio.sleep(0.2)
            return "Tell me"

    models = SlowStt({})
    session, _, playout = _session(models, settings)
    session._on_endpoint_event(SpeechStarted(at=0.0), ADA)
    for _ in range(8):
        session._on_endpoint_event(InterimAudio(np.zeros(4_000, np.float32)), ADA)
        await asyncio.sleep(0.25)
    assert 3 <= len(models.passes) <= 5, models.passes  # one at a time alone would have run all 8
    await session.close()
    playout.stop()
