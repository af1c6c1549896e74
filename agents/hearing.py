"""``Hearing``: the transcription one call does while its callers are still speaking.

Per speaker: interim passes over the growing utterance (at most ``INTERIM_STT_SHARE`` of the STT's
time), the pass started the moment a pause begins (an ``EarlyTranscript``, used if the turn ends in
that pause), the words before a pause kept once Whisper ended them as a sentence (later passes only
transcribe the audio after them), and, where the first part of a question was held as unfinished, the
pass hearing it as one with the part after it (a ``WholePass``). ``AgentSession`` says when (its
endpoint events) and decides what the words mean; this class runs the passes and keeps their state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from typing import Awaitable, Callable, Coroutine, TypeVar

import numpy as np

from parley.agents.backchannel import spoken_words
from parley.agents.speech_models import SpeechModels
from parley.agents.speculation import EarlyTranscript, HeldWords, PartOnDemand, WholePass
from parley.agents.stage_timer import EarlyTranscriptionStats
from parley.core.audio import AGENT_RATE
from parley.core.errors import BackendError

INTERIM_STT_SHARE = 0.5  # the most of the STT's time interim transcripts may take (see ``interim_due``)
# Inside one long utterance: words before a pause of at least SETTLE_PAUSE_MS that Whisper ended as a sentence
# (SETTLED_MIN_WORDS+ words, a full stop or question mark) are kept; later passes transcribe only the audio
# after them (when enough audio follows: ``SpeechModels.transcribe_after``).
SETTLE_PAUSE_MS = 400
SETTLED_MIN_WORDS = 4
_SENTENCE_END = re.compile(r"[.?!。？！]['\")”」]*$")

Settled = tuple[int, str]  # the samples a kept sentence covers, and its text
T = TypeVar("T")


class Hearing:
    """The passes in flight and what they kept, per speaker (see the module docstring)."""

    def __init__(
        self, speech: SpeechModels, stats: EarlyTranscriptionStats, log: logging.Logger | logging.LoggerAdapter,
        quiet: Callable[[], contextlib.AbstractContextManager[bool]] | None = None,
    ) -> None:
        self._speech = speech
        # Held around each pass at a pause: the work that competes for the cores and waits for that pass
        # anyway stops meanwhile (``LlmAhead.yielding_to_transcription``).
        self._quiet = quiet or (lambda: contextlib.nullcontext(False))
        self._stats = stats
        self._log = log
        self._early: dict[str, EarlyTranscript] = {}  # per speaker: the pass started when their pause began
        self._settled: dict[str, Settled] = {}  # per speaker: the words of their current utterance kept before a pause
        self._interim: asyncio.Task[None] | None = None
        self._interim_started_at = -1e9
        self._interim_pass_s = 0.0  # how long the last interim pass took

    # ---- interim passes ----

    def interim(self, speaker: str, samples: np.ndarray, heard: Callable[[str], None]) -> None:
        """Transcribe ``speaker``'s utterance so far, if a pass is due (none running, and the STT's share
        left for them); ``heard`` gets its text. A failed pass is dropped: the final pass reports failures."""
        if (self._interim is not None and not self._interim.done()) or not self.interim_due():
            return
        self._interim_started_at = time.monotonic()
        self._interim = asyncio.create_task(self._interim_pass(samples, self._settled.get(speaker), heard))

    def interim_due(self) -> bool:
        """Interim passes take at most ``INTERIM_STT_SHARE`` of the STT's time: the pass at the pause, which
        the reply waits for, must not queue behind them (Whisper base took 2 s a pass on a slow 2-core host,
        with one asked every 0.7 s; tiny.en takes 0.1–0.3 s on a normal one, where nothing changes)."""
        return (time.monotonic() - self._interim_started_at) * INTERIM_STT_SHARE >= self._interim_pass_s

    def cancel_interim(self) -> None:
        """A pause began: the interim pass is stale now (if it still waits for the model, the pause's goes first)."""
        if self._interim is not None and not self._interim.done():
            self._interim.cancel()

    async def _interim_pass(self, samples: np.ndarray, settled: Settled | None, heard: Callable[[str], None]) -> None:
        try:
            text = await self._speech.transcribe_after(samples, settled)
        except BackendError as exc:
            self._log.debug("interim transcription failed: %s", exc)
            return
        finally:
            self._interim_pass_s = time.monotonic() - self._interim_started_at
        heard(text)

    # ---- the pass at a pause ----

    def at_pause(
        self, speaker: str, pause: int, samples: np.ndarray, held: HeldWords | None,
        whole: Callable[[PartOnDemand], Awaitable[tuple[np.ndarray, str]]], ready: Callable[[EarlyTranscript], None],
    ) -> None:
        """Start transcribing ``speaker``'s utterance (``samples``) at ``pause``, before the turn is known
        to be over (one per speaker: a later pause supersedes it). Where words were ``held`` as unfinished,
        ``whole(part)`` hears them and this utterance as one (``part``: this utterance alone, transcribed
        only if that pass asks for it); otherwise ``ready(early)`` is called once the transcript is there."""
        previous = self._early.pop(speaker, None)
        if previous is not None:
            previous.supersede()  # more speech came: that snapshot is not the utterance any more
        settled = self._settled.get(speaker)
        name = f"early-stt-{speaker}"

        def own_pass() -> Coroutine[object, object, str]:  # this utterance alone
            return self._quietly(lambda: self._speech.transcribe_after(samples, settled, doubting=True))

        if held is None:
            task = asyncio.create_task(own_pass(), name=name)
            early = EarlyTranscript(pause, task, self._stats, samples.size)
            self._log_timing(task, pause, samples.size)
            task.add_done_callback(lambda _: ready(early))
        else:
            part = PartOnDemand(own_pass, name)
            early = EarlyTranscript(pause, part.task, self._stats, samples.size)
            early.hear_whole(WholePass(held, asyncio.create_task(self._quietly(lambda: whole(part))), part))
        self._early[speaker] = early

    # ---- words held as cut short, heard again ----

    async def again(self, samples: np.ndarray, text: str | None = None) -> str:
        """``samples`` (words held as cut short, heard as ``text``) heard again by the larger ear
        (``SpeechModels.hear_again``), ``quiet`` held around it as for a pass at a pause; empty where there
        is no such ear or it failed."""
        if not self._speech.hears_again:
            return ""
        heard = await self._quietly(lambda: self._speech.hear_again(samples, text))
        self._stats.heard_again += 1
        return (heard or "").strip()

    def heard_whole_again(self) -> None:
        """Count a hold ended by what the larger ear heard (``EarlyTranscriptionStats.heard_whole_again``)."""
        self._stats.heard_whole_again += 1

    async def _quietly(self, transcription: Callable[[], Awaitable[T]]) -> T:
        """``transcription()`` (a pass at a pause, which the reply waits for) with ``quiet`` held around it
        (started inside: a task cancelled before it runs leaves no coroutine never awaited)."""
        with self._quiet() as stopped:
            result = await transcription()
        if stopped:
            self._log.debug("the LLM waited for a pass at a pause")
        return result

    def _log_timing(self, task: asyncio.Task[str], pause: int, samples: int) -> None:
        """At DEBUG: how long the pass at ``pause`` took, and whether an interim pass was still in the model."""
        if not self._log.isEnabledFor(logging.DEBUG):
            return
        asked, busy = time.monotonic(), self._interim is not None and not self._interim.done()
        task.add_done_callback(lambda _: self._log.debug(
            "pause %d: %.2f s transcribed in %.0f ms%s", pause, samples / AGENT_RATE, (time.monotonic() - asked) * 1000,
            " (an interim pass was running)" if busy else "",
        ))

    def current(self, speaker: str) -> EarlyTranscript | None:
        """The pass started at ``speaker``'s latest pause, until their utterance ends."""
        return self._early.get(speaker)

    @property
    def transcribing(self) -> bool:
        """A pass started at a pause is still running (the reply may be waiting for it)."""
        return any(not early.task.done() for early in self._early.values())

    def resumed(self, speaker: str, pause: int, silence_ms: float, still_current: Callable[[], bool]) -> None:
        """``speaker`` went on after ``pause``: if Whisper ended its words as a sentence and the pause was
        long enough (``SETTLE_PAUSE_MS``), keep them (while ``still_current()``: the utterance has not
        ended meanwhile), so the rest is transcribed, shown and primed after them."""
        early = self._early.get(speaker)
        if early is None or early.pause != pause or silence_ms < SETTLE_PAUSE_MS:
            return

        def settle(task: asyncio.Task[str]) -> None:
            if task.cancelled() or task.exception() is not None or not still_current():
                return
            text = task.result().strip()
            if _SENTENCE_END.search(text) and spoken_words(text) >= SETTLED_MIN_WORDS:
                self._settled[speaker] = (early.size, text)
                early.keep()

        early.task.add_done_callback(settle)

    def settled(self, speaker: str) -> Settled | None:
        """The words of ``speaker``'s current utterance kept before a pause, if any."""
        return self._settled.get(speaker)

    # ---- the end of an utterance ----

    def at_utterance(self, speaker: str, pause: int | None) -> tuple[asyncio.Task[str] | None, WholePass | None, Settled | None]:
        """``speaker``'s utterance ended in ``pause``: the transcript started there (``None`` if it ended
        elsewhere: that pass is thrown away), the pass hearing it with held words, and what was kept."""
        settled = self._settled.pop(speaker, None)
        early = self._early.pop(speaker, None)
        if early is None:
            return None, None, settled
        if early.pause != pause:
            early.supersede()
            return None, None, settled
        return early.use(), early.whole, settled  # started when this pause began, on these very samples

    def close(self) -> list[asyncio.Task]:
        """Supersede every pass; the tasks still to be cancelled and awaited."""
        early = list(self._early.values())
        self._early.clear()
        for transcript in early:
            transcript.supersede()
        return [*(e.task for e in early), *([self._interim] if self._interim is not None else [])]
