"""Work started on a pause before the turn is known to be over: its transcript and its reply.

Both are speculative. ``EarlyTranscript`` is used when the utterance ends in the pause it started
in; ``SpeculativeReply`` is adopted by the turn when the committed question and the conversation
are exactly those it was started on. Otherwise each is thrown away without a trace: nothing heard,
nothing shown, nothing in the history — only the counters in ``/stats`` record the waste.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable

import numpy as np

from parley.agents.llm.base import ChatMessage
from parley.agents.stage_timer import EarlyTranscriptionStats, SpeculationStats
from parley.agents.text import SentenceChunker, clean_for_speech, has_words


@dataclass(frozen=True, eq=False)
class HeldWords:
    """A speaker's words that read as cut short ("What is the capital of?"), held to be heard with what
    they say next: the text, the caller line showing it, and its audio."""

    text: str
    line: int
    samples: np.ndarray


class PartOnDemand:
    """An utterance's own transcription, run only once asked for (``need``).

    After words held as unfinished, the pass hearing them and the utterance as one goes first (it is the
    question); the utterance alone is needed only where that pass fails or stops at the pause. Not
    needed (``spare``): the task ends cancelled, having cost nothing.
    """

    def __init__(self, transcribe: Callable[[], Awaitable[str]], name: str) -> None:
        self._needed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(self._run(transcribe), name=name)

    async def _run(self, transcribe: Callable[[], Awaitable[str]]) -> str:
        if not await self._needed:
            raise asyncio.CancelledError("not needed")
        return await transcribe()

    def need(self) -> asyncio.Task[str]:
        """Run it (if ``spare`` came first, the task is already cancelled)."""
        if not self._needed.done():
            self._needed.set_result(True)
        return self.task

    def spare(self) -> None:
        if not self._needed.done():
            self._needed.set_result(False)


@dataclass(frozen=True, eq=False)
class WholePass:
    """The pass hearing ``held`` and the utterance after it as one question (its audio and text), and that
    utterance's own transcription, run only if the pass needs it."""

    held: HeldWords
    task: asyncio.Task[tuple[np.ndarray, str]]
    part: PartOnDemand


class EarlyTranscript:
    """A transcription started at a pause (``SpeechPaused``), before the turn is known to be over.

    Either ``use``d (the utterance ended in that pause) or ``supersede``d (more speech came, or the
    call ended). A pass already in the model cannot be stopped, so a superseded one is left to finish
    and its model time is counted as waste; ``AgentSession.close`` cancels what is still queued.
    """

    def __init__(self, pause: int, task: asyncio.Task[str], stats: EarlyTranscriptionStats, size: int = 0) -> None:
        self.pause, self.task, self._stats = pause, task, stats
        self.size = size  # samples of the utterance it transcribes (from its start)
        self._started_at = time.monotonic()
        self._finished_at: float | None = None
        self._superseded = False
        self._wasted_s = 0.0  # counted into the stats as thrown away
        self.used = False
        self.kept = False  # superseded, but its words were kept (a settled sentence): not waste
        # The pass hearing the words held back as unfinished before this utterance and it as one.
        self.whole: WholePass | None = None
        stats.started += 1
        task.add_done_callback(self._done)

    @property
    def pending(self) -> bool:
        """Neither used nor superseded yet: the turn may still end in this pause."""
        return not self.used and not self._superseded

    def use(self) -> asyncio.Task[str]:
        self.used = True
        self._stats.used += 1
        return self.task

    def keep(self) -> None:
        """More speech came, but the words of this pass stay (a settled sentence): count it as kept,
        not as thrown away (also when it was superseded before it was kept)."""
        if self.kept:
            return
        self.kept = True
        self._stats.settled += 1
        if self._superseded:
            self._stats.superseded -= 1
            self._stats.wasted_s -= self._wasted_s
            self._wasted_s = 0.0

    def hear_whole(self, whole: WholePass) -> None:
        """Also hear this utterance joined to the words held back as unfinished before it, in ``whole``:
        at the pause, not after the endpoint (one pass fewer on the critical path)."""
        self.whole = whole
        whole.task.add_done_callback(lambda task: task.cancelled() or task.exception())  # consumed if nobody awaits it

    def supersede(self) -> None:
        if self.whole is not None:
            self.whole.task.cancel()
            self.whole.part.spare()
        if self._superseded:
            return
        self._superseded = True
        if self.kept:
            return
        self._stats.superseded += 1
        if self._finished_at is not None:
            self._count_waste()  # otherwise _done counts it when the pass ends

    def _done(self, task: asyncio.Task[str]) -> None:
        self._finished_at = time.monotonic()
        if not task.cancelled():
            task.exception()  # nobody may await a superseded one: consume its outcome
        if self._superseded and not self.kept:
            self._count_waste()

    def _count_waste(self) -> None:
        if not self.task.cancelled() and self._finished_at is not None:
            self._wasted_s = self._finished_at - self._started_at
            self._stats.wasted_s += self._wasted_s


class SpeculativeReply:
    """An LLM reply streamed from an early transcript while the end of the turn is still being decided.

    The stream is read into a buffer as it arrives. ``adopt`` hands the turn an iterator that replays
    the buffer and then follows the stream; ``cancel`` closes the stream (the LLM server stops
    generating) and counts the time it ran as waste.
    """

    def __init__(
        self, pause: int, speaker: str, text: str, messages: list[ChatMessage],
        stream: Callable[[list[ChatMessage]], AsyncIterator[str]], stats: SpeculationStats,
    ) -> None:
        self.pause, self.speaker, self.text, self.messages = pause, speaker, text, messages
        self._stats = stats
        self._deltas: list[str] = []
        self._more = asyncio.Event()
        self._finished = False
        self._error: BaseException | None = None
        self._adopted = self._cancelled = False
        self.started_at = time.monotonic()
        self.first_token_at: float | None = None
        self._finished_at: float | None = None
        self.voiced: VoicedAhead | None = None  # its first words, synthesized ahead (words held as unfinished)
        stats.started += 1
        self._task = asyncio.create_task(self._pump(stream(messages)), name=f"speculative-reply-{pause}")

    async def _pump(self, stream: AsyncIterator[str]) -> None:
        try:
            async for delta in stream:
                if self.first_token_at is None:
                    self.first_token_at = time.monotonic()
                self._deltas.append(delta)
                self._more.set()
        except Exception as exc:  # handed to the turn if it adopts this reply, else dropped
            self._error = exc
        finally:
            closing = getattr(stream, "aclose", None)
            if closing is not None:
                await closing()
            self._finished = True
            self._finished_at = time.monotonic()
            self._more.set()

    def matches(self, text: str, messages: list[ChatMessage]) -> bool:
        """True if a turn asking ``messages`` would have been asked exactly this (same question, same history)."""
        return not self._cancelled and not self._adopted and text == self.text and messages == self.messages

    def adopt(self) -> AsyncIterator[str]:
        """The reply for the turn that commits this pause: what has arrived, then the rest as it comes."""
        self._adopted = True
        self._stats.used += 1
        return self._replay(owner=True)

    def peek(self) -> AsyncIterator[str]:
        """The reply as it arrives, read without taking it (``VoicedAhead``); ends where it ends or fails."""
        return self._replay(owner=False)

    async def _replay(self, owner: bool) -> AsyncIterator[str]:
        sent = 0
        try:
            while True:
                while sent < len(self._deltas):
                    sent += 1
                    yield self._deltas[sent - 1]
                if self._finished:
                    if self._error is not None and owner:
                        raise self._error
                    return
                self._more.clear()
                await self._more.wait()
        finally:
            if owner and not self._task.done():  # the turn was cancelled (barge-in): stop the stream too
                self._task.cancel()

    def cancel(self) -> None:
        """The caller went on, or another question came: stop generating and forget the reply."""
        if self._adopted or self._cancelled:
            return
        self._cancelled = True
        if self.voiced is not None:
            self.voiced.cancel()
        self._stats.cancelled += 1
        self._stats.wasted_s += (self._finished_at or time.monotonic()) - self.started_at
        self._task.cancel()

    @property
    def active(self) -> bool:
        return not self._adopted and not self._cancelled


class VoicedAhead:
    """The first words of a ``SpeculativeReply``, synthesized before any turn has taken the reply.

    Used where a turn waits with the CPU idle: words read as cut short wait up to ``vad.unfinished_hold_ms``
    for the caller to go on, and a misheard question (“请推减一般好书。”) waited all of it and then for
    Kokoro's ~1 s on its first words. And, with a voice that does not share the LLM's cores for long (not
    ``slow``), in every pause a reply is started in: words that read whole end the turn a fixed silence into
    the pause, often after the reply's first words are written, and their voice is then ready at the commit.
    The first chunk is cut exactly as ``Reply`` will cut it (the same chunker on the same deltas), so the
    turn's voice takes this audio for it (``synthesizer``); a turn that takes the reply before its first
    chunk is written (``begun`` false) drops this and voices it itself. Cancelled with the reply; a
    synthesis already running in the executor finishes and is thrown away.
    """

    def __init__(self, reply: SpeculativeReply, first_chunk_max_words: int, synthesize: Callable[[str], Awaitable[np.ndarray]]) -> None:
        self.begun = False  # the first chunk is written and being synthesized (or the reply ended without words)
        self._task = asyncio.create_task(self._voice(reply, first_chunk_max_words, synthesize), name=f"voiced-ahead-{reply.pause}")
        self._task.add_done_callback(lambda task: task.cancelled() or task.exception())  # consumed if nobody asks

    async def _voice(
        self, reply: SpeculativeReply, first_chunk_max_words: int, synthesize: Callable[[str], Awaitable[np.ndarray]],
    ) -> tuple[str, np.ndarray] | None:
        chunker = SentenceChunker(first_chunk_max_words=first_chunk_max_words)
        async for delta in reply.peek():
            for chunk in chunker.feed(delta):
                if has_words(text := clean_for_speech(chunk)):
                    self.begun = True
                    return text, await synthesize(text)
        self.begun = True
        text = clean_for_speech(chunker.flush())
        return (text, await synthesize(text)) if has_words(text) else None

    @property
    def state(self) -> str:
        """For the log: "not written yet", "synthesizing" or "ready"."""
        return "ready" if self._task.done() else "synthesizing" if self.begun else "not written yet"

    def synthesizer(self, synthesize: Callable[[str], Awaitable[np.ndarray]]) -> Callable[[str], Awaitable[np.ndarray]]:
        """``synthesize``, except for the first text asked for: the audio voiced ahead if it is that text."""
        first = True

        async def voice(text: str) -> np.ndarray:
            nonlocal first
            if first:
                first = False
                ahead = await asyncio.gather(self._task, return_exceptions=True)
                if isinstance(ahead[0], tuple) and ahead[0][0] == text:
                    return ahead[0][1]
            return await synthesize(text)

        return voice

    def cancel(self) -> None:
        self._task.cancel()
