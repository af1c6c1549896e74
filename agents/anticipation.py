"""``Anticipation``: what the agent does with a caller's words before their turn is decided.

The session (the turn controller, ``agents/session.py``) hands over the caller's words as they come —
an onset, each interim transcript, each pause — and reads what is ready when an utterance ends. Here:
the conversation and the words so far primed into the LLM's prompt cache; a pause transcribed at once
(``Hearing.at_pause``), with the words held back before it where there are any; whether its words stop
mid-sentence asked of the LLM (words that plainly read whole end the pause sooner: their endpointer is
told); a reply speculated on them (adopted only if the turn ends on the same words); and words held as
cut short heard again by a larger ear, whose words may end the hold. The LLM work
itself is ``LlmAhead``'s (``agents/llm_ahead.py``); this class says when, on what words, and never while
the floor forbids it (a reply being generated, an utterance being decided). It decides nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Callable, Iterator, Protocol

import numpy as np

from parley.agents.backchannel import is_backchannel, words_of
from parley.agents.dialogue_state import State
from parley.agents.endpointer import Endpointer, SpeechPaused
from parley.agents.hearing import Hearing
from parley.agents.llm_ahead import LlmAhead
from parley.agents.open_question import OpenQuestions, after_held
from parley.agents.profile import AgentProfile, Speaker, is_addressed
from parley.agents.reply_turn import Turn
from parley.agents.sentence_end import SentenceVerdict, words_so_far
from parley.agents.settings import PipelineSettings
from parley.agents.speculation import EarlyTranscript, HeldWords, PartOnDemand, SpeculativeReply, VoicedAhead
from parley.agents.speech_models import SpeechModels
from parley.agents.stage_timer import SpeculationStats
from parley.agents.text import has_words
from parley.agents.tts.base import is_slow
from parley.agents.unfinished import ends_open


class Floor(Protocol):
    """What anticipation needs to know of the turn controller: whose turn it is and what is running."""

    closed: bool

    @property
    def state(self) -> State: ...

    @property
    def current_turn(self) -> Turn | None: ...

    @property
    def deciding(self) -> bool:
        """Whether an utterance is being decided (its transcription is on the critical path)."""
        ...


class Anticipation:
    """One call's work on its callers' words ahead of their turns (see the module docstring)."""

    def __init__(
        self, floor: Floor, *, settings: Callable[[], PipelineSettings], speech: SpeechModels, hearing: Hearing,
        asking: OpenQuestions, ahead: LlmAhead, profile: AgentProfile, people: Callable[[], int],
        backchannels: list[str], stats: SpeculationStats, log: logging.Logger | logging.LoggerAdapter,
    ) -> None:
        self._floor = floor
        self._settings = settings
        self._speech = speech
        self._hearing = hearing
        self._asking = asking
        self._ahead = ahead
        self._profile = profile
        self._people = people
        self._backchannels = backchannels
        self._stats = stats
        self._log = log
        # per speaker listening now: told when a pause's words read whole, asked whether the speaker is silent
        self._endpointers: dict[str, Endpointer] = {}

    @contextlib.contextmanager
    def listening(self, speaker: str, endpointer: Endpointer) -> Iterator[None]:
        """While ``speaker`` is listened to through ``endpointer``, words of theirs that read whole end
        that endpointer's pause sooner (see ``_words_judged``), and its silence stops their primes (``prime``)."""
        self._endpointers[speaker] = endpointer
        try:
            yield
        finally:
            if self._endpointers.get(speaker) is endpointer:  # (a later listener for them may have replaced it)
                del self._endpointers[speaker]

    def prime(self, text: str, speaker: Speaker) -> None:
        """While the caller speaks, evaluate the conversation and their words so far into the LLM's prompt
        cache, so that when the turn ends only its last words need prefill (measured on this CPU: first
        token ~0.55 → ~0.2 s). One request at a time; never while a reply is being generated or an
        utterance is being transcribed and decided."""
        floor = self._floor
        if not self._settings().agent.primes_llm or floor.state not in (State.USER_SPEAKING, State.PAUSED):
            return
        current = floor.current_turn
        if current is not None and current.active and not (current is self._asking.unheard_turn_of(speaker) and current.generated_all):
            return  # a reply is being generated (the LLM is busy), or playing
        if floor.deciding or self._hearing.transcribing:
            return  # a transcription on the critical path is running: the two cores are its own
        endpointer = self._endpointers.get(speaker.participant_id)
        if endpointer is not None and endpointer.silence_ms > 0:
            # The caller has stopped (an interim pass that ended after their last word): the pause's own pass
            # starts within vad.tail_ms and stops the LLM, and a prime sent now would finish only after it, in
            # front of the judgement of the pause's words (which evaluates the same words in one request).
            return
        words = words_so_far(text)  # the words so far, not the punctuation Whisper guessed for them
        if not floor.closed and self._ahead.prime(lambda: self._asking.prompt_if_asked(words, speaker), words):
            self._stats.primes += 1

    def at_pause(self, event: SpeechPaused, speaker: Speaker) -> None:
        """Start transcribing at the pause, before the turn is known to be over (``Hearing.at_pause``): the
        reply is speculated on once the transcript is there, or the words held before it are heard with it."""
        self._hearing.cancel_interim()
        held = self._asking.held(speaker.participant_id)
        endpointer = self._endpointers.get(speaker.participant_id)
        if endpointer is not None and held is None and self._may_speculate_now():
            # A reply may be started on these words: the end-of-turn model waits for them (``vad.words_first_ms``).
            endpointer.await_words(event.pause)
        self._hearing.at_pause(
            speaker.participant_id, event.pause, event.samples, held,
            lambda part: self._heard_with(held, part, event.samples, speaker, event.pause),  # (called only where held)
            lambda early: self._speculate(early, speaker),
        )

    async def _heard_with(
        self, held: HeldWords, part: PartOnDemand, samples: np.ndarray, speaker: Speaker, pause: int,
    ) -> tuple[np.ndarray, str]:
        """Words ``held`` back as unfinished and the utterance after them (its ``samples``; ``part`` its own
        transcript, run only if needed) as one question: its audio and text (``SpeechModels.whole_first``).
        Whether that question stops mid-sentence is asked of the LLM at once (a question that plainly reads
        whole ends the pause sooner); the decision takes the verdict."""
        try:
            parts = lambda: self._parts_text(held, part)  # noqa: E731 - run only if the whole pass needs it
            samples, text = await self._speech.whole_first(held.samples, samples, held.text, parts)
        except BaseException:
            self._words_known(speaker, pause, whole=False)
            raise
        finally:
            part.spare()
        self._judge(speaker, text, pause, held=False)
        return samples, text

    @staticmethod
    async def _parts_text(held: HeldWords, part: PartOnDemand) -> str:
        return after_held(held.text, (await part.need()).strip())

    def _speculate(self, early: EarlyTranscript, speaker: Speaker) -> None:
        """The early transcript is ready and the turn is still open: start the reply now, so it is under
        way when the end-of-turn model makes up its mind (adopted only if the question stays the same)."""
        # The turn was decided meanwhile (its decision uses the transcript), the caller went on, or the pass failed:
        stale = self._floor.closed or not early.pending or self._hearing.current(speaker.participant_id) is not early
        if stale or early.task.cancelled() or early.task.exception() is not None:
            self._words_known(speaker, early.pause, whole=False)  # (no verdict comes: the end-of-turn model decides)
            return
        text = early.task.result().strip()
        # First (the reply below then finds the conversation in the LLM's cache): do these words stop mid-sentence?
        self._judge(speaker, text, early.pause)
        if self._may_speculate(text, speaker):
            spec = self._ahead.speculate(early.pause, speaker.participant_id, text, self._asking.prompt_if_asked(text, speaker))
            self._voice_ahead(spec, text, slow_too=False)

    def while_held(self, speaker: Speaker, text: str, pause: int | None) -> None:
        """The committed words ``text`` (of the utterance that ended in ``pause``) read as cut short, and the
        turn waits for the caller to go on: answer them meanwhile, so that if they say no more the reply is
        under way when the wait ends (a misheard question — "Tell me a fun fact about curse." — read as
        unfinished used to start its reply only after the whole hold), and its first words are voiced (the
        CPU is idle while the turn waits: Kokoro's first Mandarin words took ~1 s more after the hold). The
        caller going on cancels both."""
        agent = self._settings().agent
        if pause is None or not agent.speculate or self._floor.closed or not self._may_speculate(text, speaker):
            return
        spec = self._ahead.speculate(pause, speaker.participant_id, text, self._asking.prompt_if_asked(text, speaker))
        self._voice_ahead(spec, text, slow_too=True)

    def _voice_ahead(self, spec: SpeculativeReply, text: str, *, slow_too: bool) -> None:
        """Voice the first words of ``spec`` (a reply to ``text``) as soon as they are written, before its turn
        takes it (``VoicedAhead``): where that turn ends later than the words are ready, their voice is there
        at once. ``slow_too``: also for a slow voice (Kokoro), which shares the LLM's cores — only while the
        turn waits on a hold (the CPU idle); in a pause still being decided it would slow the reply itself."""
        settings = self._settings().agent
        if spec.voiced is not None or settings.pipeline != "streaming":
            return
        voice = self._profile.voice(self._profile.language_of(text))  # (the voice its turn will speak with)
        if slow_too or not is_slow(voice):
            spec.voiced = VoicedAhead(spec, settings.first_chunk_max_words, functools.partial(self._speech.synthesize, voice))

    async def verdict(self, speaker: Speaker, text: str) -> SentenceVerdict:
        """Whether ``speaker``'s question ``text`` stops mid-sentence: the verdict started on these words at
        their pause (``_judge``), or a new one."""
        ask = lambda words: self._asking.prompt_if_asked(words, speaker)  # noqa: E731 - the conversation with these words
        return await self._ahead.sentence_ends.verdict(speaker.participant_id, text, self._profile.language_of(text), ask)

    async def heard_whole_again(self, speaker: Speaker, text: str, samples: np.ndarray, pause: int | None) -> str | None:
        """Words ``text`` (their audio ``samples``, committed in ``pause``) read as cut short: hear them again
        with the larger ear (``Hearing.again``) and return what it heard where that differs and the LLM reads
        it as a whole sentence (``vad.text_turn_done_threshold``: the turn ends on those words at once); else
        ``None``, once the reply to ``text`` is under way for the hold (``while_held``)."""
        try:
            heard = await self._hearing.again(samples, text)
            if has_words(heard) and words_of(heard) != words_of(text):
                # A reply to ``text`` still under way (begun at the pause where these words were not judged
                # cut short there: ``_words_judged`` drops the others) would hold the call's slot of the LLM
                # ahead of the judgement: it goes (``while_held`` writes it anew if the hold goes on).
                self._ahead.cancel(speaker.participant_id, pause, "the held words were heard otherwise")
                verdict = await self.verdict(speaker, self._asking.so_far(speaker, heard))
                probability = verdict.probability
                self._log.info("%r heard again as %r: %s", text, heard, "not judged" if probability is None else f"{probability:.3f}")
                if not verdict.unfinished and (probability or 0.0) >= self._settings().vad.text_turn_done_threshold:
                    self._hearing.heard_whole_again()
                    return heard
        except Exception:  # (a failed second listen leaves the hold as it was)
            self._log.exception("hearing %r again failed", text)
        if not self._floor.closed:
            self.while_held(speaker, text, pause)
        return None

    def _judge(self, speaker: Speaker, text: str, pause: int, held: bool = True) -> None:
        """Start asking (smart endpointing) whether the question ``text`` makes so far stops mid-sentence
        (see ``OpenQuestions.so_far`` for ``held``); the decision takes the verdict, and words that plainly
        read whole are told to the endpointer."""
        if self._settings().vad.endpoint != "smart" or not has_words(text) or self._floor.closed:
            self._words_known(speaker, pause, whole=False)
            return
        asked = self._asking.so_far(speaker, text, held=held)
        judged = self._ahead.sentence_ends.start(
            speaker.participant_id, asked, self._profile.language_of(asked), lambda words: self._asking.prompt_if_asked(words, speaker),
        )
        if judged is not None:
            judged.add_done_callback(lambda task: self._words_judged(task, pause, speaker))
        else:
            self._words_known(speaker, pause, whole=False)

    def _words_judged(self, task: asyncio.Task[SentenceVerdict], pause: int, speaker: Speaker) -> None:
        """Words that plainly read as a whole sentence end their pause sooner than the voice alone would
        (``vad.text_turn_done_silence_ms``), if the caller is still silent in it; other verdicts leave it
        to the end-of-turn model."""
        whole = False
        if not task.cancelled() and task.exception() is None and not self._floor.closed:
            verdict, vad = task.result(), self._settings().vad
            whole = not verdict.unfinished and (verdict.probability or 0.0) >= vad.text_turn_done_threshold
            if whole:
                self._log.debug("the words of pause %d read whole (%.2f): told the endpointer", pause, verdict.probability)
            elif verdict.unfinished and self._speech.hears_again:
                # Held words are heard again before they are answered (``heard_whole_again``; ``while_held``
                # writes their reply after that): the reply started on them at the pause goes before it asks
                # the LLM, or it holds the call's slot in front of the judgement of what the larger ear
                # hears (a batch llama.cpp finishes once begun: ~0.17 s on 2 cores, measured 2026-12-07).
                self._ahead.cancel(speaker.participant_id, pause, "cut short: the larger ear hears them first")
        self._words_known(speaker, pause, whole=whole)

    def _words_known(self, speaker: Speaker, pause: int, *, whole: bool) -> None:
        """Tell ``speaker``'s endpointer that the words of ``pause`` read whole (they end it at
        ``vad.text_turn_done_silence_ms``), and whether the end-of-turn model is to be asked now: unless they
        read whole and their reply is under way (the turn's end is then not what the caller waits for, and
        the model would share the cores with that reply's first words)."""
        endpointer = self._endpointers.get(speaker.participant_id)
        if endpointer is None:
            return
        if whole:
            endpointer.words_done(pause)
        if not whole or not self._ahead.speculating(speaker.participant_id, pause):
            endpointer.words_heard(pause)

    def _may_speculate_now(self) -> bool:
        """The caller has the floor and no reply of the agent's is playing or pending."""
        floor = self._floor
        return floor.state == State.USER_SPEAKING and not (floor.current_turn is not None and floor.current_turn.active)

    def _may_speculate(self, text: str, speaker: Speaker) -> bool:
        """Only a plain next question: words, nothing held or pending, nobody's reply playing."""
        if not has_words(text) or self._asking.held(speaker.participant_id) is not None or not self._may_speculate_now():
            return False
        if is_backchannel(text, self._backchannels) or ends_open(text):  # (the words' verdict comes separately)
            return False
        return not self._profile.group_mode(self._people()) or is_addressed(text, self._profile.name)
