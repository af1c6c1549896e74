"""``QuestionReader``: what a finished utterance says, up to the question to answer.

The turn controller (``AgentSession``, ``agents/session.py``) decides what to do with each finished
utterance and acts on the floor; this reads the utterance for it. Its words: the pass started at its
pause, the pass that heard it as one with words held back before it, or a pass now; joined with those
held words (``OpenQuestions``). Then whether they read as a finished question (``Anticipation.verdict``:
the word rules and the LLM, smart endpointing only) and, where they stop mid-sentence, the hold on them:
the caller goes on (the words are carried into their next utterance), the larger ear hears other words
that read whole (they are the question at once), or the hold runs out (the words are the question as
heard). It starts nothing and answers nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from parley.agents.anticipation import Anticipation
from parley.agents.decisions import Decisions, answer
from parley.agents.endpointer import Utterance
from parley.agents.llm_ahead import LlmAhead
from parley.agents.open_question import OpenQuestions, after_held
from parley.agents.profile import Speaker
from parley.agents.sentence_end import FINISHED, SentenceVerdict
from parley.agents.settings import PipelineSettings
from parley.agents.speculation import WholePass
from parley.agents.speech_models import SpeechModels
from parley.agents.stage_timer import TurnTimer


@dataclass(frozen=True)
class Heard:
    """A finished utterance's audio and words, with the words held back before it where there were some."""

    samples: np.ndarray
    text: str
    line: int  # the caller line they are shown on (the held words' line where they continue them)
    carried: bool  # words held back as unfinished before this utterance are part of it


class QuestionReader:
    """Reads one call's finished utterances (see the module docstring); ``closed()`` ends every wait early."""

    def __init__(
        self, *, speech: SpeechModels, asking: OpenQuestions, anticipation: Anticipation, ahead: LlmAhead,
        decisions: Decisions, settings: Callable[[], PipelineSettings], closed: Callable[[], bool],
        log: logging.Logger | logging.LoggerAdapter,
    ) -> None:
        self._speech = speech
        self._asking = asking
        self._anticipation = anticipation
        self._ahead = ahead
        self._decisions = decisions
        self._settings = settings
        self._closed = closed
        self._log = log

    async def heard(
        self, utterance: Utterance, speaker: Speaker, transcript: asyncio.Task[str] | None, line: int,
        settled: tuple[int, str] | None = None, whole: WholePass | None = None,
    ) -> Heard | None:
        """The utterance's audio and words (the transcript started at its pause, ``transcript``, or the pass
        that heard it with the words held before it, ``whole``, or a pass now after the sentences ``settled``
        at its pauses), joined with the words ``speaker`` held back before it; ``None`` if the call closed
        meanwhile. Raises ``BackendError`` where transcription failed (the held words stay held)."""
        heard_whole = whole is not None and whole.held is self._asking.held(speaker.participant_id) and not whole.task.cancelled()
        if whole is not None and not heard_whole:  # (the words held changed since the pause) this part alone, then
            transcript = whole.part.need()
        if transcript is not None and transcript.cancelled():
            transcript = None
        if heard_whole:  # the held words and this utterance, heard as one at the pause
            assert whole is not None
            samples, text = await whole.task
        else:
            pending = transcript if transcript is not None else self._speech.transcribe_after(utterance.samples, settled, doubting=True)
            samples, text = utterance.samples, (await pending).strip()
        if self._closed():
            return None
        carried = self._asking.take_held(speaker.participant_id)
        if carried is None:
            return Heard(samples, text, line, carried=False)
        if not heard_whole:  # the first part of this question, held back as unfinished: hear it whole
            samples, text = await self._speech.whole(carried.samples, samples, after_held(carried.text, text))
        return None if self._closed() else Heard(samples, text, carried.line, carried=True)

    async def question(self, utterance: Utterance, timer: TurnTimer, speaker: Speaker, heard: Heard) -> str | None:
        """The question to answer in ``heard`` once it reads finished, or after the hold on words that stop
        mid-sentence (what the larger ear heard, where that reads whole); ``None``: the caller went on (the
        words are carried into their next utterance) or the call closed."""
        text = heard.text
        verdict = await self._sentence_verdict(self._asking.so_far(speaker, text), speaker)
        if self._closed():
            return None
        timer.sentence_end_ms = verdict.model_ms or None
        held_from = time.monotonic()
        if verdict.unfinished:
            answered = await self._held(utterance, speaker, text, heard.samples)
            if answered is None:
                self._asking.hold(speaker, text, heard.line, heard.samples)
                self._log.info("%r reads as unfinished and %s went on: carried into the next utterance", text, speaker.name)
                return None
            if self._closed():
                return None
            text = answered
        if time.monotonic() - held_from > 0.05:  # held for nothing: the turn ended only now
            timer.endpoint_at = timer.stt_done_at = time.monotonic()
        return text

    async def went_on(
        self, utterance: Utterance, speaker: Speaker, within_s: float, until: asyncio.Task[str | None] | None = None,
    ) -> bool:
        """Whether ``speaker`` speaks again within ``within_s`` of the end of ``utterance``'s speech
        (``Decisions.went_on``) and the call is still open."""
        went_on = await self._decisions.went_on(speaker.participant_id, utterance.speech_end_at, within_s, until)
        return went_on and not self._closed()

    async def _held(self, utterance: Utterance, speaker: Speaker, text: str, samples: np.ndarray) -> str | None:
        """Words ``text`` that read as cut short wait up to ``vad.unfinished_hold_ms`` for ``speaker`` to go
        on (``None``: they did). Meanwhile the larger ear hears them again (``stt.hear_held_again``): other
        words that read whole end the wait at once, and are the question; otherwise the reply to ``text`` is
        generated during the wait (``Anticipation.while_held``) and the question is ``text`` if nobody went on."""
        again = asyncio.create_task(self._anticipation.heard_whole_again(speaker, text, samples, utterance.pause), name="hear-held-again")
        try:
            if await self.went_on(utterance, speaker, self._settings().vad.unfinished_hold_ms / 1000, until=again):
                return None
        finally:
            again.cancel()
        return answer(again) or text

    async def _sentence_verdict(self, text: str, speaker: Speaker) -> SentenceVerdict:
        """Whether ``text`` stops mid-sentence ("What is the capital of?", "Why do leaves?"), by the word
        rules and the LLM (smart endpointing only): then the turn waits, up to ``vad.unfinished_hold_ms``
        after the caller's last speech, for them to go on."""
        if self._settings().vad.endpoint != "smart":
            self._ahead.sentence_ends.drop(speaker.participant_id)
            return FINISHED
        return await self._anticipation.verdict(speaker, text)
