"""``AgentSession``: one call's agent — listen, endpoint, transcribe, think, speak — with per-turn metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from typing import Callable

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from parley.agents.endpointer import Endpointer, SpeechStarted, Utterance
from parley.agents.llm.base import ChatMessage
from parley.agents.metrics import TurnTimer
from parley.agents.runtime import AgentModels
from parley.agents.text import SentenceChunker, clean_for_speech
from parley.server.audio import WEBRTC_RATE, FrameToAgentPcm, resample
from parley.server.config import Settings
from parley.server.errors import ParleyError
from parley.server.logs import CallLogger
from parley.server.playout import PlayoutTrack
from parley.signaling import messages as m

log = logging.getLogger(__name__)
_WORD = re.compile(r"\w")

Emit = Callable[[m.ServerMessage], None]


class AgentSession:
    """Owns one call's agent: its input loop, its current turn, its memory; cancel-safe throughout."""

    def __init__(
        self, models: AgentModels, settings: Settings, playout: PlayoutTrack, emit: Emit, participant_id: str
    ) -> None:
        self._models = models
        self._settings = settings
        self._playout = playout
        self._emit = emit
        self._participant_id = participant_id
        self._log = CallLogger(log, participant=participant_id)
        vad = settings.vad
        self._endpointer = Endpointer(
            models.vad.open_stream(), threshold=vad.threshold, min_speech_ms=vad.min_speech_ms,
            endpoint_silence_ms=vad.endpoint_silence_ms, preroll_ms=vad.preroll_ms, max_utterance_s=vad.max_utterance_s,
        )
        self._history: list[ChatMessage] = []
        self._turn_id = 0
        self._turn_task: asyncio.Task[None] | None = None
        self.state: m.AgentStateName = "listening"

    # ---- input -------------------------------------------------------------------------------

    async def listen(self, track: MediaStreamTrack) -> None:
        """Consume the caller's audio until the track ends; start a turn at each endpoint."""
        if self._settings.agent.pipeline == "naive":
            await self._listen_naive(track)
            return
        converter = FrameToAgentPcm()
        loop = asyncio.get_running_loop()
        pending: list[np.ndarray] = []
        pending_size = 0
        window = self._endpointer.window_samples
        try:
            while True:
                frame = await track.recv()
                pcm = converter.convert(frame)
                pending.append(pcm)
                pending_size += pcm.size
                if pending_size < window:
                    continue
                chunk = np.concatenate(pending)
                pending, pending_size = [], 0
                events = await loop.run_in_executor(
                    self._models.vad_executor, self._endpointer.process, chunk, time.monotonic()
                )
                for event in events:
                    if isinstance(event, Utterance):
                        self._start_turn(TurnTimer(self._turn_id + 1, event.speech_end_at, event.endpoint_at), event)
                    elif isinstance(event, SpeechStarted):
                        self._log.debug("speech started")
        except MediaStreamError:
            self._log.info("caller's audio track ended")
        except Exception as exc:  # a VAD failure ends listening for this call only
            self._log.exception("listening failed")
            self._emit(m.Error(code="backend_error", message=f"the agent stopped listening: {type(exc).__name__}"))

    async def _listen_naive(self, track: MediaStreamTrack) -> None:
        """The baseline: transcribe fixed chunks; a chunk with no words after some words ends the turn."""
        converter = FrameToAgentPcm()
        loop = asyncio.get_running_loop()
        chunk_samples = int(self._settings.agent.naive_chunk_s * 16_000)
        pending = np.zeros(0, np.float32)
        heard: list[str] = []
        last_words_at = 0.0
        try:
            while True:
                pending = np.concatenate([pending, converter.convert(await track.recv())])
                if pending.size < chunk_samples:
                    continue
                chunk, pending = pending[:chunk_samples], pending[chunk_samples:]
                text = await loop.run_in_executor(
                    self._models.executor, self._models.stt.transcribe, chunk, self._settings.stt.language
                )
                now = time.monotonic()
                if _WORD.search(text):
                    heard.append(text.strip())
                    last_words_at = now
                elif heard:
                    timer = TurnTimer(self._turn_id + 1, last_words_at, now)
                    timer.stt_done_at = now
                    self._start_turn(timer, text=" ".join(heard))
                    heard = []
        except MediaStreamError:
            self._log.info("caller's audio track ended")

    # ---- turns -------------------------------------------------------------------------------

    def _start_turn(self, timer: TurnTimer, utterance: Utterance | None = None, text: str | None = None) -> None:
        if self._turn_task is not None and not self._turn_task.done():
            self._log.info("new utterance while turn %d runs: cancelling it", self._turn_id)
            self._turn_task.cancel()
        self._turn_id = timer.turn_id
        self._turn_task = asyncio.create_task(self._run_turn(timer, utterance, text), name=f"turn-{timer.turn_id}")

    def _set_state(self, state: m.AgentStateName, turn_id: int | None) -> None:
        if state != self.state:
            self._log.info("agent state %s -> %s (turn %s)", self.state, state, turn_id)
            self.state = state
            self._emit(m.AgentState(state=state, turn_id=turn_id))

    def _messages(self) -> list[ChatMessage]:
        keep = self._settings.agent.max_history_turns * 2
        history = self._history[-keep:] if keep else []
        return [ChatMessage(role="system", content=self._settings.agent.system_prompt), *history]

    async def _run_turn(self, timer: TurnTimer, utterance: Utterance | None, text: str | None) -> None:
        """Transcribe (unless ``text`` is given), stream the reply, speak it; cancel-safe."""
        turn_id = timer.turn_id
        speaker: asyncio.Task[None] | None = None
        spoken: list[str] = []
        generated: list[str] = []
        try:
            self._set_state("thinking", turn_id)
            if text is None:
                assert utterance is not None
                text = await asyncio.get_running_loop().run_in_executor(
                    self._models.executor, self._models.stt.transcribe, utterance.samples, self._settings.stt.language
                )
                timer.stt_done_at = time.monotonic()
                if not _WORD.search(text):
                    self._log.info("turn %d: no words in %.2f s of speech", turn_id, utterance.duration_s)
                    return
            self._log.info("turn %d: user said %r", turn_id, text)
            self._emit(m.Transcript(speaker="user", participant_id=self._participant_id, turn_id=turn_id, text=text, final=True))
            self._history.append(ChatMessage(role="user", content=text))
            chunks: asyncio.Queue[str | None] = asyncio.Queue()
            speaker = asyncio.create_task(self._speak(chunks, timer, spoken))
            await self._generate(timer, chunks, speaker, generated)
            await speaker
        except asyncio.CancelledError:
            self._log.info("turn %d cancelled", turn_id)
            self._playout.flush()
            raise
        except ParleyError as exc:
            self._log.warning("turn %d failed: %s", turn_id, exc)
            self._emit(m.Error(code=exc.code, message=str(exc)))
        except Exception as exc:
            self._log.exception("turn %d failed", turn_id)
            self._emit(m.Error(code="internal_error", message=f"turn {turn_id} failed: {type(exc).__name__}"))
        finally:
            if speaker is not None and not speaker.done():
                speaker.cancel()
                with contextlib.suppress(BaseException):
                    await speaker
            if spoken:
                # Keep the reply exactly as generated so the LLM server's prompt cache still matches it.
                self._history.append(ChatMessage(role="assistant", content="".join(generated).strip()))
            if turn_id == self._turn_id:
                self._set_state("listening", turn_id)

    async def _generate(
        self, timer: TurnTimer, chunks: asyncio.Queue[str | None], speaker: asyncio.Task[None], generated: list[str]
    ) -> None:
        """Stream the LLM's reply into ``chunks`` (clause by clause, or whole for the naive baseline) and ``generated``."""
        streaming = self._settings.agent.pipeline == "streaming"
        chunker = SentenceChunker(first_chunk_max_words=self._settings.agent.first_chunk_max_words)
        async for delta in self._models.llm.stream(self._messages()):
            if timer.llm_first_token_at is None:
                timer.llm_first_token_at = time.monotonic()
            generated.append(delta)
            if not streaming:
                continue  # the naive baseline speaks only once the whole reply is known
            for chunk in chunker.feed(delta):
                chunks.put_nowait(chunk)
            if speaker.done():
                return  # the speaker failed: awaiting it raises its exception
        rest = chunker.flush() if streaming else "".join(generated).strip()
        if rest:
            chunks.put_nowait(rest)
        chunks.put_nowait(None)

    async def _speak(self, chunks: asyncio.Queue[str | None], timer: TurnTimer, spoken: list[str]) -> None:
        """Synthesize chunks in order and queue them for playout; return once the last one has been played."""
        loop = asyncio.get_running_loop()
        tts = self._models.tts
        end = self._playout.buffer.pushed
        reporter: asyncio.Task[None] | None = None
        try:
            while (chunk := await chunks.get()) is not None:
                text = clean_for_speech(chunk)
                if not _WORD.search(text):
                    continue
                if timer.first_chunk_at is None:
                    timer.first_chunk_at = time.monotonic()
                audio = await loop.run_in_executor(self._models.executor, tts.synthesize, text)
                pcm = resample(audio, tts.sample_rate, WEBRTC_RATE)
                start = self._playout.buffer.pushed
                end = self._playout.push(pcm)
                spoken.append(text)
                if reporter is None:
                    timer.tts_first_audio_at = time.monotonic()
                    reporter = asyncio.create_task(self._report_first_audio(start + 1, timer))
                self._emit(m.Transcript(
                    speaker="agent", participant_id=self._participant_id, turn_id=timer.turn_id,
                    text=" ".join(spoken), final=False,
                ))
            await self._playout.buffer.wait_played(end)
            if reporter is not None:
                await reporter
            if spoken:
                self._emit(m.Transcript(
                    speaker="agent", participant_id=self._participant_id, turn_id=timer.turn_id,
                    text=" ".join(spoken), final=True,
                ))
        finally:
            if reporter is not None and not reporter.done():
                reporter.cancel()

    async def _report_first_audio(self, position: int, timer: TurnTimer) -> None:
        timer.first_audio_sent_at = await self._playout.buffer.wait_played(position)
        self._set_state("speaking", timer.turn_id)
        metrics = timer.as_metrics()
        self._log.info(
            "turn %d metrics: %s", timer.turn_id, " ".join(f"{k}={v}" for k, v in metrics.items())
        )
        self._emit(m.TurnMetrics(turn_id=timer.turn_id, **metrics))

    async def close(self) -> None:
        """Cancel the current turn and stop speaking."""
        if self._turn_task is not None and not self._turn_task.done():
            self._turn_task.cancel()
            with contextlib.suppress(BaseException):
                await self._turn_task
        self._playout.flush()
