"""``Reply``: one turn's answer — LLM deltas → clauses → TTS → the playout buffer, and what was heard of it.

Handed its input (the LLM's stream) and its output (an ``AudioOutput``); it knows nothing of turn-taking
beyond the ``Turn`` it fills in, and reports through typed agent events and one callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import AsyncIterator, Awaitable, Callable

import numpy as np

from parley.agents.events import AgentEvent, ReplyTranscript, TurnLatency
from parley.agents.text import SentenceChunker, clean_for_speech, has_words, join_all_said
from parley.agents.reply_turn import Segment, Turn
from parley.core.audio import WEBRTC_RATE, resample
from parley.agents.audio_output import AudioOutput

Chunk = tuple[str, int, int]  # text, and its first and last character in the reply as generated
# Once this little (plus the last chunk's synthesis time) is left to play and nothing else is on its
# way, the words generated so far are spoken without waiting for their sentence to end: a CPU LLM at
# ~10 tokens a second took 1.3 s for "for a long flight is "The Great Gatsby" by F. Scott Fitzgerald."
# after a first chunk of 0.8 s, and the caller heard a silence of up to 1.2 s mid-sentence.
LOW_WATER_S = 0.3
STARVED_MIN_WORDS = 2


class Reply:
    """Generates and speaks one turn's reply; ``run`` returns once its last sample has been played.

    ``streaming`` speaks clause by clause (the first after ``first_chunk_max_words``, its voice synthesized
    a token ahead where the next token begins a word: ``voice_first_ahead``); otherwise the whole reply is
    synthesized once the LLM is done (the naive baseline).
    """

    def __init__(
        self,
        turn: Turn,
        playout: AudioOutput,
        synthesize: Callable[[str], Awaitable[np.ndarray]],
        sample_rate: int,
        emit: Callable[[AgentEvent], None],
        on_audio_started: Callable[[Turn], None],
        *,
        streaming: bool = True,
        first_chunk_max_words: int = 3,
        on_voiced: Callable[[Turn], None] | None = None,
        first_words: Callable[[str], contextlib.AbstractContextManager[bool]] | None = None,
        voice_first_ahead: bool = True,
    ) -> None:
        self.turn = turn
        self._playout = playout
        self._synthesize = synthesize
        self._sample_rate = sample_rate
        self._emit = emit
        self._on_audio_started = on_audio_started
        self._on_voiced = on_voiced  # every chunk synthesized: what is left is playing it
        self._first_words = first_words  # held (given the chunk) while the first is synthesized: a slow voice, the LLM yields
        self._streaming = streaming
        self._first_chunk_max_words = first_chunk_max_words
        self._synthesizing = False
        self._synthesis_s = 0.0  # how long the last chunk took to synthesize
        # The first chunk's voice, synthesized one token ahead: text → its synthesis (``_voice_ahead``).
        self._voice_first_ahead = voice_first_ahead and streaming and first_words is None
        self._ahead: dict[str, asyncio.Future[np.ndarray]] = {}

    async def run(self, stream: AsyncIterator[str]) -> None:
        chunks: asyncio.Queue[Chunk | None] = asyncio.Queue()
        speaking = asyncio.create_task(self._speak(chunks), name=f"speak-{self.turn.id}")
        try:
            await self._generate(stream, chunks, speaking)
            await speaking
        finally:
            for ahead in self._ahead.values():
                ahead.cancel()
            if not speaking.done():
                speaking.cancel()
                try:
                    await speaking
                except BaseException:  # its own failure or cancellation; ours propagates from here
                    pass

    async def _generate(self, stream: AsyncIterator[str], chunks: asyncio.Queue[Chunk | None], speaking: asyncio.Task[None]) -> None:
        """Stream the LLM's reply into ``chunks`` with each chunk's place in the reply's text."""
        turn = self.turn
        chunker = SentenceChunker(first_chunk_max_words=self._first_chunk_max_words)
        cursor = 0

        def put(chunk: str) -> None:
            nonlocal cursor
            start = turn.reply.find(chunk, cursor)
            start = cursor if start < 0 else start
            cursor = start + len(chunk)
            chunks.put_nowait((chunk, start, cursor))

        async for delta in stream:
            if turn.timer.llm_first_token_at is None:
                turn.timer.llm_first_token_at = time.monotonic()
            turn.generated.append(delta)
            if not self._streaming:
                continue  # the naive baseline speaks only once the whole reply is known
            for chunk in chunker.feed(delta):
                put(chunk)
            if not chunker.emitted:
                self._voice_ahead(chunker.first_if_a_word_begins())
            if chunker.emitted and chunks.empty() and self._running_low():
                early = chunker.cut_words(STARVED_MIN_WORDS)
                if early:
                    put(early)
            if speaking.done():
                return  # the speaker failed: awaiting it raises its exception
        rest = chunker.flush() if self._streaming else turn.reply.strip()
        if rest:
            put(rest)
        chunks.put_nowait(None)

    def _voice_ahead(self, chunk: str | None) -> None:
        """Start synthesizing ``chunk``, the first chunk should the next token begin a word (the usual case:
        the chunker waits for it to know the last word is whole), so that its voice is ready one token
        sooner. One at a time; not for a slow voice (``first_words``: the LLM yields it the cores while it
        synthesizes) nor where the first chunk was voiced ahead already (``voice_first_ahead`` false)."""
        if chunk is None or not self._voice_first_ahead:
            return
        text = clean_for_speech(chunk)
        if not has_words(text) or text in self._ahead or any(not ahead.done() for ahead in self._ahead.values()):
            return
        ahead = asyncio.ensure_future(self._synthesize(text))
        ahead.add_done_callback(lambda done: done.cancelled() or done.exception())  # a miss's failure is nobody's
        self._ahead[text] = ahead

    async def _synthesized(self, text: str, hold: Callable[[str], contextlib.AbstractContextManager[bool]] | None) -> np.ndarray:
        """``text``'s voice: the one synthesized ahead for exactly this text if there is one (and it did not
        fail), otherwise synthesized now (``hold`` around it). Guesses that missed and have not reached the
        voice yet (deltas that came in a burst) are dropped."""
        ahead = self._ahead.pop(text, None)
        for missed in self._ahead.values():
            missed.cancel()
        self._ahead.clear()
        if ahead is not None:
            try:
                return await ahead
            except Exception:  # (a BackendError): synthesized again below, which reports its own failure
                pass
        with hold(text) if hold is not None else contextlib.nullcontext(False):
            return await self._synthesize(text)

    def _running_low(self) -> bool:
        """Nothing is being synthesized and the audio queued will be played out within the low-water mark."""
        if self._synthesizing:
            return False
        buffer = self._playout.buffer
        return (buffer.pushed - buffer.played) / WEBRTC_RATE < LOW_WATER_S + self._synthesis_s

    async def _speak(self, chunks: asyncio.Queue[Chunk | None]) -> None:
        """Synthesize chunks in order and queue them for playout; return once the last one has been played."""
        turn, timer = self.turn, self.turn.timer
        end = self._playout.buffer.pushed
        reporter: asyncio.Task[None] | None = None
        spoken: list[str] = []
        try:
            while (item := await chunks.get()) is not None:
                chunk, raw_start, raw_end = item
                text = clean_for_speech(chunk)
                if not has_words(text):
                    continue
                if timer.first_chunk_at is None:
                    timer.first_chunk_at = time.monotonic()
                self._synthesizing, started = True, time.monotonic()
                hold = self._first_words if reporter is None else None  # (nothing is heard yet)
                try:
                    audio = await self._synthesized(text, hold)
                finally:
                    self._synthesizing, self._synthesis_s = False, time.monotonic() - started
                start = self._playout.buffer.pushed
                end = self._playout.push(resample(audio, self._sample_rate, WEBRTC_RATE))
                turn.segments.append(Segment(start, end, raw_start, raw_end))
                spoken.append(text)
                if reporter is None:
                    timer.tts_first_audio_at = time.monotonic()
                    reporter = asyncio.create_task(self._report_first_audio(start + 1))
                if turn.interrupted_at is None and not turn.dropped:  # cut meanwhile: heard_text has the last word
                    self._emit(ReplyTranscript(turn.id, join_all_said(spoken), final=False))
            if self._on_voiced is not None:
                self._on_voiced(turn)
            await self._playout.buffer.wait_played(end)
            if reporter is not None:
                await reporter
            if spoken:
                self._emit(ReplyTranscript(turn.id, join_all_said(spoken), final=True))
        finally:
            if reporter is not None and not reporter.done():
                reporter.cancel()

    async def _report_first_audio(self, position: int) -> None:
        turn = self.turn
        turn.timer.first_audio_sent_at = await self._playout.buffer.wait_played(position)
        if turn.interrupted_at is not None or turn.dropped:
            return  # released by a flush, not by playout
        turn.audio_started = True
        self._on_audio_started(turn)
        self._emit(TurnLatency(turn.id, turn.timer.as_metrics()))
