"""OpenAI's Realtime API on Parley's pipeline: ``GET /v1/realtime`` (WebSocket) and ``POST /v1/realtime/client_secrets``.

An app written for the hosted Realtime WebSocket API talks to Parley by changing its base URL. Each
connection is one agent call (counted by admission control): the client's ``input_audio_buffer.append``
audio plays into an ``AgentSession`` as a live 24 kHz microphone, and the agent's voice goes back as
``response.output_audio.delta`` events, paced in real time as it would be played (so a barge-in keeps
in the history only what was sent). The wire format is ``parley.signaling.realtime_protocol``; how each
event maps to Parley's behaviour is in docs/realtime.md.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol

import av
import numpy as np
from aiohttp import WSMsgType, web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from parley.agents import events as ev
from parley.agents.dialogue_state import State
from parley.agents.profile import AgentProfile, Speaker
from parley.agents.runtime import AgentModels
from parley.agents.session import AgentSession
from parley.agents.settings import VadSettings
from parley.core.audio import AGENT_RATE, WEBRTC_RATE, Resampler, float_to_int16, int16_to_float, resample
from parley.core.errors import AuthError, BackendError, LimitError, ModelLoadError, SignalingError
from parley.server.config import Settings
from parley.server.audio_backlog import BoundedAudioTrack
from parley.server.offer_check import media_sections
from parley.server.participant import server_ice_servers
from parley.server.playout import PlayoutTrack
from parley.signaling import realtime_protocol as rp
from parley.signaling.state import STATE_KEY, ParleyState

log = logging.getLogger(__name__)
SECRET_ROOM = "realtime"  # the "room" claim of client secrets (they open realtime sessions, no room)
SECRET_PREFIX = "ek_"
FRAME_MS = 20
FRAME_SAMPLES = rp.AUDIO_RATE * FRAME_MS // 1000
MAX_INPUT_S = 60  # audio appended ahead of real time beyond this is refused (input_audio_buffer_full)
VOICE_CHUNK_MS = 100  # the agent's voice goes out in deltas of this much audio
_BUSY_STATES = (State.THINKING, State.SPEAKING, State.PAUSED)


class PcmInput(MediaStreamTrack):
    """The client's appended audio as a live microphone: 20 ms frames at 24 kHz on a steady clock,
    silence when nothing is queued — the agent's endpointing sees it as it would a WebRTC track."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._chunks: deque[np.ndarray] = deque()
        self._queued = 0
        self._start: float | None = None
        self._frames = 0
        self.delivered_ms = 0  # audio handed to the listener so far (speech_started's audio_start_ms)

    def append(self, pcm: np.ndarray) -> None:
        if self._queued + pcm.size > MAX_INPUT_S * rp.AUDIO_RATE:
            raise rp.RealtimeProtocolError(
                "input_audio_buffer_full", f"more than {MAX_INPUT_S} s of audio is waiting to be heard: send it in real time",
            )
        self._chunks.append(pcm)
        self._queued += pcm.size

    def clear(self) -> None:
        self._chunks.clear()
        self._queued = 0

    def _take(self, count: int) -> np.ndarray:
        out = np.zeros(count, np.int16)
        filled = 0
        while filled < count and self._chunks:
            chunk = self._chunks[0]
            n = min(count - filled, chunk.size)
            out[filled : filled + n] = chunk[:n]
            filled += n
            if n == chunk.size:
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[n:]
        self._queued -= filled
        return out

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self._frames * FRAME_MS / 1000
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > 1.0:  # the loop stalled: do not rush to catch up
            self._start = now - self._frames * FRAME_MS / 1000
        pcm = self._take(FRAME_SAMPLES)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rp.AUDIO_RATE
        frame.pts = self._frames * FRAME_SAMPLES
        self._frames += 1
        self.delivered_ms += FRAME_MS
        return frame


@dataclass
class _Response:
    """One response: the agent turn it is, its output item, what it has said."""

    id: str
    turn_id: int
    item_id: str
    started: bool = False  # its output item and content part were announced
    transcript: str = ""
    audio_ms: int = 0
    closed: bool = False


@dataclass
class _Items:
    """The conversation's items as the client knows them, and what each is in the session."""

    user_by_line: dict[int, str] = field(default_factory=dict)  # caller's utterance line → item id
    turn_by_item: dict[str, int] = field(default_factory=dict)  # assistant item → its turn
    message_by_item: dict[str, Any] = field(default_factory=dict)  # items the client created → their ChatMessage
    last_item: str | None = None


def _decode_audio(data: str) -> np.ndarray:
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise rp.RealtimeProtocolError("invalid_value", "audio is not valid base64", param="audio") from exc
    if len(raw) % 2:
        raise rp.RealtimeProtocolError("invalid_value", "pcm16 audio has an even number of bytes", param="audio")
    return np.frombuffer(raw, "<i2").astype(np.int16)


class EventTransport(Protocol):
    """Where a session's events travel: a WebSocket, or the ``oai-events`` data channel of a WebRTC call."""

    @property
    def closed(self) -> bool: ...

    async def send(self, text: str) -> None: ...

    def incoming(self) -> AsyncIterator[str | None]:
        """Client events as JSON text (``None`` for a frame that is not text); ends when the transport closes."""
        ...


class WebSocketEvents:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self._ws = ws

    @property
    def closed(self) -> bool:
        return self._ws.closed

    async def send(self, text: str) -> None:
        await self._ws.send_str(text)

    async def incoming(self) -> AsyncIterator[str | None]:
        async for message in self._ws:
            if message.type == WSMsgType.TEXT:
                yield message.data
            elif message.type == WSMsgType.BINARY:
                yield None


class DataChannelEvents:
    """The ``oai-events`` data channel; what is sent before it opens waits for it."""

    def __init__(self, channel: Any) -> None:
        self._channel = channel
        self._inbox: asyncio.Queue[str | None | BaseException] = asyncio.Queue()
        self._open = asyncio.Event()
        if channel.readyState == "open":
            self._open.set()
        channel.on("open", self._open.set)
        channel.on("message", lambda data: self._inbox.put_nowait(data if isinstance(data, str) else None))
        channel.on("close", lambda: self._inbox.put_nowait(EOFError()))

    @property
    def closed(self) -> bool:
        return self._channel.readyState == "closed"

    async def send(self, text: str) -> None:
        await self._open.wait()
        if self._channel.readyState == "open":
            self._channel.send(text)

    async def incoming(self) -> AsyncIterator[str | None]:
        while True:
            item = await self._inbox.get()
            if isinstance(item, BaseException):
                return
            yield item


class RealtimeCall:
    """One Realtime session: client events in, an ``AgentSession`` doing the work, server events out.

    Over a WebSocket the audio travels in events (``microphone`` None: appended audio plays into the
    agent as a live 24 kHz track; the voice goes out as deltas). In a WebRTC call it travels as media:
    ``microphone`` is the caller's track and ``playout`` the track the peer connection sends.
    """

    def __init__(
        self, transport: EventTransport, models: AgentModels, settings: Settings, *, beta: bool, model: str,
        microphone: MediaStreamTrack | None = None, playout: PlayoutTrack | None = None,
    ) -> None:
        self._transport = transport
        self._models = models
        self._settings = settings
        self.events = rp.ServerEvents(beta)
        self.id = rp.new_id("sess")
        self.config = rp.SessionConfig(model=model or "parley", instructions=settings.agent.system_prompt,
                                       turn_detection=self._default_detection())
        self._speaker = Speaker(f"realtime-{self.id[-6:]}", "user")
        self._media = microphone is not None
        self._mic = PcmInput()
        self._ear: MediaStreamTrack = microphone if microphone is not None else self._mic
        self._playout = playout or PlayoutTrack()
        self._session: AgentSession | None = None
        self._listening: asyncio.Task[None] | None = None
        self._voice_pump: asyncio.Task[None] | None = None
        self._manual_audio: list[np.ndarray] = []  # turn_detection null: the buffer until commit
        self._items = _Items()
        self._responses: dict[int, _Response] = {}
        self._client_turns: set[int] = set()  # turns a response.create started (no speech item of their own)
        self._speech_item: str | None = None  # the caller's utterance being heard now
        self._committed: str | None = None  # the last utterance that became a question
        self._cancel_reason = "turn_detected"
        self._failed = False
        self._pending: list[asyncio.Task[None]] = []  # transcriptions of committed audio
        self._voice = _VoiceOut()

    def _default_detection(self) -> rp.TurnDetection:
        vad = self._settings.vad
        if vad.endpoint == "smart":
            return rp.TurnDetection(type="semantic_vad")
        return rp.TurnDetection(type="server_vad", threshold=vad.threshold, prefix_padding_ms=vad.preroll_ms,
                                silence_duration_ms=vad.endpoint_silence_ms)

    # ---- the socket ------------------------------------------------------------------------------

    async def send(self, event: dict[str, Any] | None) -> None:
        if event is not None and not self._transport.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._transport.send(json.dumps(event, ensure_ascii=False))

    def post(self, event: dict[str, Any] | None) -> None:
        """Send from a synchronous callback (agent events), in order."""
        if event is not None:
            self._outbox.put_nowait(event)

    async def run(self) -> None:
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        writer = asyncio.create_task(self._write(), name=f"realtime-out-{self.id}")
        profile = AgentProfile(self._settings.agent.name, self.config.instructions, self._settings.agent.language,
                               "always", self._models.tts)
        self._session = AgentSession(self._models, self._settings, self._playout, self._on_agent_event, self.id, profile)
        if not self._media:  # in a WebRTC call the voice is the peer connection's own track
            self._voice_pump = asyncio.create_task(self._pump_voice(), name=f"realtime-voice-{self.id}")
        self.post(self.events.make("session.created", session=rp.session_object(self.config, self.id, self.events.beta)))
        self._start_listening()
        try:
            async for text in self._transport.incoming():
                if text is None:
                    self.post(self.events.error("invalid_event", "events are JSON text frames"))
                    continue
                await self._handle_text(text)
        finally:
            await self._close()
            writer.cancel()
            with contextlib.suppress(BaseException):
                await writer

    async def _write(self) -> None:
        while True:
            await self.send(await self._outbox.get())

    async def _handle_text(self, text: str) -> None:
        event_id = None
        try:
            data = json.loads(text)
            event_id = data.get("event_id") if isinstance(data, dict) else None
            await self._handle(rp.parse_client_event(data))
        except json.JSONDecodeError:
            self.post(self.events.error("invalid_json", "the event is not valid JSON"))
        except rp.RealtimeProtocolError as exc:
            log.info("realtime %s: refused %s: %s", self.id, exc.code, exc.message)
            self.post(self.events.error(exc.code, exc.message, event_id=event_id, param=exc.param, kind=exc.kind))

    async def _close(self) -> None:
        for task in (self._listening, self._voice_pump, *self._pending):
            if task is not None:
                task.cancel()
        if self._session is not None:
            await self._session.close()
        self._mic.stop()
        self._playout.stop()

    # ---- client events -------------------------------------------------------------------------------

    async def _handle(self, event: rp.ClientEvent) -> None:
        session = self._session
        assert session is not None
        if isinstance(event, rp.SessionUpdate):
            await self._update_session(event.session)
        elif isinstance(event, rp.AudioAppend):
            if self._media:
                raise rp.RealtimeProtocolError("invalid_event", "in a WebRTC call the audio travels on the media track, not in events")
            pcm = _decode_audio(event.audio)
            if self.config.turn_detection is None:
                self._manual_audio.append(pcm)
            else:
                self._mic.append(pcm)
        elif isinstance(event, rp.AudioClear):
            self._manual_audio.clear()
            self._mic.clear()
            self.post(self.events.make("input_audio_buffer.cleared"))
        elif isinstance(event, rp.AudioCommit):
            self._commit()
        elif isinstance(event, rp.ItemCreate):
            await self._create_item(event)
        elif isinstance(event, rp.ItemTruncate):
            self._truncate(event)
        elif isinstance(event, rp.ItemDelete):
            self._delete(event.item_id)
        elif isinstance(event, rp.ResponseCreate):
            await self._create_response()
        elif isinstance(event, rp.ResponseCancel):
            self._cancel_response(event.response_id)

    async def _update_session(self, update: Any) -> None:
        config = rp.apply_session_update(self.config, update)
        if self._media and config.turn_detection is None:
            raise rp.RealtimeProtocolError(
                "invalid_value", "a WebRTC call needs turn detection (manual turns need the audio in events: the WebSocket API)",
                param="session.audio.input.turn_detection",
            )
        if config.voice != self.config.voice:
            try:
                tts = await self._models.voice(None if config.voice == "default" else config.voice)
            except ModelLoadError as exc:
                raise rp.RealtimeProtocolError("invalid_value", f"voice {config.voice!r}: {exc}", param="session.voice") from exc
            assert self._session is not None
            self._session.profile.tts = tts
        detection_changed = config.turn_detection != self.config.turn_detection
        self.config = config
        assert self._session is not None
        self._session.profile.system_prompt = config.instructions or self._settings.agent.system_prompt
        if detection_changed:
            self._start_listening()
        self.post(self.events.make("session.updated", session=rp.session_object(config, self.id, self.events.beta)))

    def _start_listening(self) -> None:
        """(Re)start the listener with the session's turn detection; none with ``turn_detection`` null."""
        if self._listening is not None:
            self._listening.cancel()
            self._listening = None
        self._mic.clear()
        detection = self.config.turn_detection
        if detection is None:
            return
        assert self._session is not None
        vad: VadSettings = self._settings.vad
        if detection.type == "server_vad":
            vad = vad.model_copy(update={
                "endpoint": "silence", "threshold": detection.threshold, "preroll_ms": detection.prefix_padding_ms,
                "endpoint_silence_ms": detection.silence_duration_ms,
            })
        self._session.use_vad(vad)
        self._listening = asyncio.create_task(self._session.listen(self._ear, self._speaker), name=f"realtime-ear-{self.id}")

    def _commit(self) -> None:
        if self.config.turn_detection is not None:
            raise rp.RealtimeProtocolError(
                "invalid_value", "with turn detection on, turns are committed by the server: set turn_detection to null first",
            )
        if not self._manual_audio:
            raise rp.RealtimeProtocolError("input_audio_buffer_commit_empty", "the input audio buffer is empty")
        pcm = np.concatenate(self._manual_audio)
        self._manual_audio = []
        item_id = rp.new_id("item")
        previous, self._items.last_item = self._items.last_item, item_id
        self.post(self.events.make("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous))
        self.post(self.events.make("conversation.item.added", item=self.events.user_item(item_id, None), previous_item_id=previous))
        self._pending.append(asyncio.create_task(self._transcribe_item(item_id, pcm), name=f"realtime-stt-{item_id}"))

    async def _transcribe_item(self, item_id: str, pcm: np.ndarray) -> None:
        assert self._session is not None
        samples = resample(int16_to_float(pcm), rp.AUDIO_RATE, AGENT_RATE)
        try:
            text = await self._session.transcribe(samples)
        except BackendError as exc:
            self.post(self.events.make("conversation.item.input_audio_transcription.failed", item_id=item_id, content_index=0,
                                       error={"type": "server_error", "code": exc.code, "message": str(exc)}))
            return
        if text:
            self._items.message_by_item[item_id] = self._session.remember("user", text)
        self._transcribed(item_id, text, pcm.size / rp.AUDIO_RATE)

    def _transcribed(self, item_id: str, text: str, seconds: float) -> None:
        if self.config.transcribe_input:
            self.post(self.events.make(
                "conversation.item.input_audio_transcription.completed", item_id=item_id, content_index=0, transcript=text,
                usage={"type": "duration", "seconds": round(seconds, 3)},
            ))
        self.post(self.events.make("conversation.item.done", item=self.events.user_item(item_id, text)))

    async def _create_item(self, event: rp.ItemCreate) -> None:
        assert self._session is not None
        item = event.item
        item_id = item.id or rp.new_id("item")
        text = " ".join(part.text or part.transcript or "" for part in item.content if part.text or part.transcript).strip()
        audio = [part.audio for part in item.content if part.audio]
        if item.role == "user" and audio:
            pcm = np.concatenate([_decode_audio(a) for a in audio])
            samples = resample(int16_to_float(pcm), rp.AUDIO_RATE, AGENT_RATE)
            try:
                heard = await self._session.transcribe(samples)
            except BackendError as exc:
                raise rp.RealtimeProtocolError(exc.code, str(exc), kind="server_error") from exc
            text = f"{text} {heard}".strip()
        if not text:
            raise rp.RealtimeProtocolError("invalid_value", "the item has no text and no audio", param="item.content")
        previous, self._items.last_item = self._items.last_item, item_id
        if item.role == "system":  # instructions given mid-conversation
            self._session.profile.system_prompt += f"\n{text}"
        else:
            self._items.message_by_item[item_id] = self._session.remember(item.role, text)
        shown = (self.events.assistant_item(item_id, text, "completed") if item.role == "assistant"
                 else {**self.events.user_item(item_id, text, text=True), "role": item.role})
        self.post(self.events.make("conversation.item.added", item=shown, previous_item_id=previous))
        self.post(self.events.make("conversation.item.done", item=shown))

    def _truncate(self, event: rp.ItemTruncate) -> None:
        assert self._session is not None
        turn_id = self._items.turn_by_item.get(event.item_id)
        if turn_id is None:
            raise rp.RealtimeProtocolError("item_not_found", f"no assistant audio item {event.item_id!r}", param="item_id")
        heard = self._session.truncate_reply(turn_id, event.audio_end_ms)
        if heard is None:
            raise rp.RealtimeProtocolError("invalid_value", f"item {event.item_id!r} has no audio to truncate", param="item_id")
        self.post(self.events.make("conversation.item.truncated", item_id=event.item_id, content_index=event.content_index,
                                   audio_end_ms=event.audio_end_ms))

    def _delete(self, item_id: str) -> None:
        assert self._session is not None
        message = self._items.message_by_item.pop(item_id, None)
        turn_id = self._items.turn_by_item.pop(item_id, None)
        if turn_id is not None:
            turn = next((t for t in self._session.turns if t.id == turn_id), None)
            message = turn.assistant_message if turn is not None else None
        if message is None:
            raise rp.RealtimeProtocolError("item_not_found", f"no item {item_id!r} in the conversation", param="item_id")
        self._session.forget(message)
        self.post(self.events.make("conversation.item.deleted", item_id=item_id))

    async def _create_response(self) -> None:
        assert self._session is not None
        if any(not r.closed for r in self._responses.values()):
            raise rp.RealtimeProtocolError(
                "conversation_already_has_active_response", "a response is in progress: cancel it or wait for response.done",
            )
        if self._pending:  # committed audio still being transcribed: it is part of the question
            await asyncio.gather(*self._pending, return_exceptions=True)
            self._pending.clear()
        turn_id = self._session.reply_now()
        self._client_turns.add(turn_id)
        self._open_response(turn_id)

    def _cancel_response(self, response_id: str | None) -> None:
        assert self._session is not None
        open_ = [r for r in self._responses.values() if not r.closed and (response_id is None or r.id == response_id)]
        if not open_:
            raise rp.RealtimeProtocolError("response_cancel_not_active", "there is no response in progress to cancel")
        self._cancel_reason = "client_cancelled"
        if not self._session.cancel_reply():  # not generating any more (e.g. not started): close it here
            for response in open_:
                self._finish(response, "cancelled", "client_cancelled")
        self._cancel_reason = "turn_detected"

    # ---- agent events → server events ------------------------------------------------------------------

    def _on_agent_event(self, event: ev.AgentEvent) -> None:
        if isinstance(event, ev.StateChanged):
            self._on_state(event.state, event.turn_id)
        elif isinstance(event, ev.CallerTranscript):
            if event.final:
                self._on_caller_final(event)
        elif isinstance(event, ev.ReplyTranscript):
            self._on_reply_text(event.turn_id, event.text, event.final)
        elif isinstance(event, ev.ReplyInterrupted):
            response = self._responses.get(event.turn_id)
            if response is not None and not response.closed:
                self._flush_voice(response)
                response.transcript = event.heard_text
                self._finish(response, "cancelled", self._cancel_reason)
        elif isinstance(event, ev.AgentFailure):
            self._failed = True
            self.post(self.events.error(event.code, event.message, kind="server_error"))

    def _on_state(self, state: State, turn_id: int | None) -> None:
        if state in (State.USER_SPEAKING, State.PAUSED) and self._speech_item is None and self.config.turn_detection is not None:
            self._speech_item = rp.new_id("item")
            start = max(0, self._mic.delivered_ms - self._settings.vad.preroll_ms)
            self.post(self.events.make("input_audio_buffer.speech_started", audio_start_ms=start, item_id=self._speech_item))
        elif state not in (State.USER_SPEAKING, State.PAUSED) and self._speech_item is not None:
            item_id, self._speech_item = self._speech_item, None
            self.post(self.events.make("input_audio_buffer.speech_stopped", audio_end_ms=self._mic.delivered_ms, item_id=item_id))
            if state == State.THINKING:  # the utterance became a question
                previous, self._items.last_item = self._items.last_item, item_id
                self._committed = item_id
                self.post(self.events.make("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous))
        # A turn that ended without its last words (failed, folded into the next question): checked once
        # the session is done reacting (an interruption reports what was heard right after its state change).
        failed, self._failed = self._failed, False
        asyncio.get_running_loop().call_soon(self._close_stale, state, turn_id, failed)
        if state == State.THINKING and turn_id is not None:
            self._open_response(turn_id)

    def _close_stale(self, state: State, turn_id: int | None, failed: bool) -> None:
        for response in list(self._responses.values()):
            if response.closed or (state in _BUSY_STATES and turn_id == response.turn_id):
                continue
            self._flush_voice(response)
            self._finish(response, "failed" if failed else "cancelled", None if failed else self._cancel_reason)

    def _open_response(self, turn_id: int) -> None:
        if turn_id in self._responses:
            return
        response = _Response(rp.new_id("resp"), turn_id, rp.new_id("item"))
        self._responses[turn_id] = response
        self._items.turn_by_item[response.item_id] = turn_id
        self.post(self.events.make("response.created", response=self.events.response(response.id, "in_progress", [])))

    def _on_caller_final(self, event: ev.CallerTranscript) -> None:
        if event.turn_id in self._client_turns:
            return
        item_id = self._items.user_by_line.get(event.utterance_id)
        fresh = item_id is None
        if item_id is None:
            item_id = self._speech_item or self._committed or rp.new_id("item")
            self._items.user_by_line[event.utterance_id] = item_id
        if fresh:
            self.post(self.events.make("conversation.item.added", item=self.events.user_item(item_id, None)))
        self._transcribed(item_id, event.text, 0.0)

    def _start(self, response: _Response) -> None:
        if response.started:
            return
        response.started = True
        item = self.events.assistant_item(response.item_id, None, "in_progress")
        previous, self._items.last_item = self._items.last_item, response.item_id
        self.post(self.events.make("response.output_item.added", response_id=response.id, output_index=0, item=item))
        self.post(self.events.make("conversation.item.added", item=item, previous_item_id=previous))
        self.post(self.events.make("response.content_part.added", response_id=response.id, item_id=response.item_id,
                                   output_index=0, content_index=0, part={"type": "audio", "transcript": ""}))

    def _on_reply_text(self, turn_id: int, text: str, final: bool) -> None:
        response = self._responses.get(turn_id)
        if response is None or response.closed:
            return
        self._start(response)
        delta = text[len(response.transcript):] if text.startswith(response.transcript) else ""
        if delta:
            response.transcript = text
            self.post(self.events.make("response.output_audio_transcript.delta", response_id=response.id,
                                       item_id=response.item_id, output_index=0, content_index=0, delta=delta))
        if final:
            self._flush_voice(response)
            response.transcript = text
            self._finish(response, "completed", None)

    def _finish(self, response: _Response, status: str, reason: str | None) -> None:
        response.closed = True
        where = {"response_id": response.id, "item_id": response.item_id, "output_index": 0, "content_index": 0}
        output: list[dict[str, Any]] = []
        if response.started:
            item_status = "completed" if status == "completed" else "incomplete"
            item = self.events.assistant_item(response.item_id, response.transcript, item_status)
            output = [item]
            self.post(self.events.make("response.output_audio.done", **where))
            self.post(self.events.make("response.output_audio_transcript.done", **where, transcript=response.transcript))
            self.post(self.events.make("response.content_part.done", **where,
                                       part={"type": "audio", "transcript": response.transcript}))
            self.post(self.events.make("response.output_item.done", response_id=response.id, output_index=0, item=item))
            self.post(self.events.make("conversation.item.done", item=item))
        self.post(self.events.make("response.done", response=self.events.response(response.id, status, output, reason)))

    # ---- the agent's voice -------------------------------------------------------------------------------

    def _current_response(self) -> _Response | None:
        return next((r for r in reversed(list(self._responses.values())) if not r.closed), None)

    async def _pump_voice(self) -> None:
        """Play the agent's voice in real time (as a WebRTC track would) and send it as audio deltas."""
        stats = self._playout.stats
        while True:
            before = stats.audio_frames_sent
            frame = await self._playout.recv()
            if stats.audio_frames_sent == before:
                continue  # silence: nothing queued, or paused while the caller speaks
            response = self._current_response()
            if response is None:
                continue
            self._voice.add(frame.to_ndarray().reshape(-1))
            if self._voice.ms >= VOICE_CHUNK_MS:
                self._flush_voice(response)

    def _flush_voice(self, response: _Response) -> None:
        data = self._voice.take()
        if data is None:
            return
        self._start(response)
        response.audio_ms += len(data) * 1000 // (2 * rp.AUDIO_RATE)
        self.post(self.events.make("response.output_audio.delta", response_id=response.id, item_id=response.item_id,
                                   output_index=0, content_index=0, delta=base64.b64encode(data).decode("ascii")))


class _VoiceOut:
    """48 kHz int16 playout frames gathered and turned into 24 kHz pcm16 bytes (one resampler for the stream)."""

    def __init__(self) -> None:
        self._frames: list[np.ndarray] = []
        self._resampler = Resampler(WEBRTC_RATE, rp.AUDIO_RATE)

    @property
    def ms(self) -> int:
        return sum(f.size for f in self._frames) * 1000 // WEBRTC_RATE

    def add(self, pcm: np.ndarray) -> None:
        self._frames.append(pcm)

    def take(self) -> bytes | None:
        if not self._frames:
            return None
        samples = int16_to_float(np.concatenate(self._frames))
        self._frames = []
        return float_to_int16(self._resampler.process(samples)).astype("<i2").tobytes()


# ---- HTTP: auth, the socket, client secrets ------------------------------------------------------------

def _openai_error(status: int, code: str, message: str, state: ParleyState, kind: str = "invalid_request_error") -> web.Response:
    state.count_error(code)
    return web.json_response({"error": {"message": message, "type": kind, "code": code, "param": None}}, status=status)


def _offered_key(request: web.Request) -> str | None:
    """The credential: ``Authorization: Bearer …``, or (browsers cannot set headers on a WebSocket) the
    subprotocol ``openai-insecure-api-key.<key>`` as the hosted API accepts it."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and given.strip():
        return given.strip()
    for protocol in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        protocol = protocol.strip()
        if protocol.startswith("openai-insecure-api-key."):
            return protocol.removeprefix("openai-insecure-api-key.")
    return None


def _authorize(state: ParleyState, key: str | None) -> None:
    """The admin key, or a client secret from ``POST /v1/realtime/client_secrets``; none needed in dev mode."""
    if key is None:
        if state.settings.auth.dev_mode:
            return
        raise AuthError("send 'Authorization: Bearer <key>': the admin API key or a client secret", code="unauthorized")
    if key.startswith(SECRET_PREFIX):
        state.tokens.verify(key.removeprefix(SECRET_PREFIX), SECRET_ROOM)
        return
    if not state.api_key or not hmac.compare_digest(key.encode(), state.api_key.encode()):
        raise AuthError("the key is neither the admin API key nor a valid client secret", code="unauthorized")


async def realtime_socket(request: web.Request) -> web.StreamResponse:
    """``GET /v1/realtime?model=…``: one Realtime session over a WebSocket."""
    state = request.app[STATE_KEY]
    if state.models is None:
        return _openai_error(503, "realtime_unavailable", "this server runs without models (echo mode)", state, "server_error")
    try:
        _authorize(state, _offered_key(request))
    except AuthError as exc:
        return _openai_error(401, exc.code, str(exc), state)
    if state.draining:
        return _openai_error(503, "server_shutdown", "the server is shutting down", state, "server_error")
    admission = state.admission
    call_id = rp.new_id("call")
    try:
        if admission is not None:
            admission.acquire(call_id)
    except LimitError as exc:
        return _openai_error(429, exc.code, str(exc), state, "server_error")
    try:
        protocols = ("realtime",) if "realtime" in request.headers.get("Sec-WebSocket-Protocol", "") else ()
        # Frames up to 4× the append limit are read (an oversized append gets its typed error and the
        # session goes on); larger ones close the socket (1009, message too big).
        ws = web.WebSocketResponse(protocols=protocols, max_msg_size=4 * rp.MAX_APPEND_BYTES, heartbeat=20)
        await ws.prepare(request)
        beta = "realtime=v1" in request.headers.get("OpenAI-Beta", "")
        call = RealtimeCall(WebSocketEvents(ws), state.models, state.settings, beta=beta,  # type: ignore[arg-type]
                            model=request.query.get("model", ""))
        log.info("realtime %s: opened (%s protocol)", call.id, "beta" if beta else "GA")
        await call.run()
        log.info("realtime %s: closed", call.id)
        return ws
    finally:
        if admission is not None:
            admission.release(call_id)


async def client_secret(request: web.Request) -> web.Response:
    """``POST /v1/realtime/client_secrets`` (admin key): a short-lived credential for one browser's sessions."""
    state = request.app[STATE_KEY]
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not state.api_key or not hmac.compare_digest(given.strip().encode(), state.api_key.encode()):
        return _openai_error(401, "unauthorized", "client secrets are minted with the admin API key", state)
    ttl = 600
    if request.can_read_body:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _openai_error(400, "invalid_json", "the body is not valid JSON", state)
        seconds = (body.get("expires_after") or {}).get("seconds") if isinstance(body, dict) else None
        if seconds is not None:
            if not isinstance(seconds, int) or not 10 <= seconds <= 7200:
                return _openai_error(400, "invalid_value", "expires_after.seconds must be 10 … 7200", state)
            ttl = seconds
    token, expires_at = state.tokens.mint(SECRET_ROOM, rp.new_id("client"), ttl_s=ttl)
    config = rp.SessionConfig(instructions=state.settings.agent.system_prompt)
    return web.json_response({"value": SECRET_PREFIX + token, "expires_at": expires_at,
                              "session": rp.session_object(config, rp.new_id("sess"), beta=False)})


def _realtime_offer_check(sdp: str) -> None:
    """A hosted-API WebRTC offer: one audio m-line (Opus first) and the ``oai-events`` data channel, nothing else."""
    if not sdp.strip().startswith("v=0"):
        raise SignalingError("the body is not an SDP offer", code="invalid_sdp")
    sections = media_sections(sdp)
    kinds = sorted(s.kind for s in sections)
    if kinds != ["application", "audio"]:
        raise SignalingError(
            f"a Realtime WebRTC offer carries one audio m-line and one data channel; this one has {', '.join(kinds) or 'none'}",
            code="unsupported_media",
        )
    audio = next(s for s in sections if s.kind == "audio")
    if audio.codecs[:1] != ("opus",):
        raise SignalingError(f"the audio m-line must offer Opus first (offered: {', '.join(audio.codecs)})", code="unsupported_codec")


class _WebRtcCall:
    """The peer connection of one ``POST /v1/realtime/calls``, and the Realtime session it carries."""

    def __init__(self, state: ParleyState, call_id: str, beta: bool, model: str) -> None:
        self.state, self.id, self.beta, self.model = state, call_id, beta, model
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=server_ice_servers(state.settings) or None))  # type: ignore[arg-type]
        self.playout = PlayoutTrack()
        self._channel: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._microphone: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
        self.pc.on("datachannel", self._on_channel)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)
        self.done = asyncio.Event()

    def _on_channel(self, channel: Any) -> None:
        if channel.label == "oai-events" and not self._channel.done():
            self._channel.set_result(DataChannelEvents(channel))  # listening now: its first events may come at once

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and not self._microphone.done():
            self._microphone.set_result(BoundedAudioTrack(track))  # a slow agent drops old audio, never piles it up

    async def _on_state(self) -> None:
        log.info("realtime %s: peer connection %s", self.id, self.pc.connectionState)
        if self.pc.connectionState in ("failed", "closed"):
            self.done.set()

    async def answer(self, offer: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        audio = next(t for t in self.pc.getTransceivers() if t.kind == "audio")
        audio.sender.replaceTrack(self.playout)
        audio.direction = "sendrecv"
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    async def run(self, admission: Any) -> None:
        """Until the call ends: the data channel and the microphone arrive, then the session runs."""
        try:
            setup = asyncio.gather(self._channel, self._microphone)
            waiting = asyncio.create_task(self.done.wait())
            await asyncio.wait({setup, waiting}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            if not setup.done():
                setup.cancel()
                log.info("realtime %s: no data channel and microphone within 30 s: call dropped", self.id)
                return
            waiting.cancel()
            channel, microphone = setup.result()
            call = RealtimeCall(channel, self.state.models, self.state.settings,  # type: ignore[arg-type]
                                beta=self.beta, model=self.model, microphone=microphone, playout=self.playout)
            session = asyncio.create_task(call.run())
            ended = asyncio.create_task(self.done.wait())
            await asyncio.wait({session, ended}, return_when=asyncio.FIRST_COMPLETED)
            for task in (session, ended):
                task.cancel()
            await asyncio.gather(session, ended, return_exceptions=True)
        finally:
            await self.pc.close()
            if admission is not None:
                admission.release(self.id)
            log.info("realtime %s: WebRTC call ended", self.id)


_CALLS_KEY = web.AppKey("parley-realtime-calls", set)


async def realtime_calls(request: web.Request) -> web.Response:
    """``POST /v1/realtime/calls`` (body: the SDP offer, ``application/sdp``): the SDP answer, 201.

    The hosted API's WebRTC flow: audio both ways on the media track, events on the ``oai-events``
    data channel the client opened. The call runs until the peer connection closes or fails.
    """
    state = request.app[STATE_KEY]
    if state.models is None:
        return _openai_error(503, "realtime_unavailable", "this server runs without models (echo mode)", state, "server_error")
    try:
        _authorize(state, _offered_key(request))
    except AuthError as exc:
        return _openai_error(401, exc.code, str(exc), state)
    if state.draining:
        return _openai_error(503, "server_shutdown", "the server is shutting down", state, "server_error")
    offer = await request.text()
    if "multipart/form-data" in request.headers.get("Content-Type", ""):
        return _openai_error(415, "unsupported_media_type", "send the SDP offer as the body, Content-Type application/sdp", state)
    try:
        _realtime_offer_check(offer)
    except SignalingError as exc:
        return _openai_error(400, exc.code, str(exc), state)
    call_id = rp.new_id("rtc")
    admission = state.admission
    try:
        if admission is not None:
            admission.acquire(call_id)
    except LimitError as exc:
        return _openai_error(429, exc.code, str(exc), state, "server_error")
    call = _WebRtcCall(state, call_id, "realtime=v1" in request.headers.get("OpenAI-Beta", ""), request.query.get("model", ""))
    try:
        answer = await call.answer(offer)
    except Exception as exc:  # aiortc raises ValueError/KeyError/… on an SDP it cannot take
        await call.pc.close()
        if admission is not None:
            admission.release(call_id)
        return _openai_error(400, "invalid_sdp", f"the offer was rejected: {type(exc).__name__}: {exc}", state)
    calls = request.app[_CALLS_KEY]
    task = asyncio.create_task(call.run(admission), name=f"realtime-{call_id}")
    calls.add(task)
    task.add_done_callback(calls.discard)
    log.info("realtime %s: WebRTC call answered", call_id)
    return web.Response(status=201, text=answer, content_type="application/sdp",
                        headers={"Location": f"/v1/realtime/calls/{call_id}"})


async def _end_calls(app: web.Application) -> None:
    for task in list(app.get(_CALLS_KEY, ())):
        task.cancel()
    await asyncio.gather(*app.get(_CALLS_KEY, ()), return_exceptions=True)


def install(app: web.Application) -> None:
    """Register the Realtime routes on ``app`` (and end its WebRTC calls on shutdown)."""
    app[_CALLS_KEY] = set()
    app.router.add_get("/v1/realtime", realtime_socket)
    app.router.add_post("/v1/realtime/calls", realtime_calls)
    app.router.add_post("/v1/realtime/client_secrets", client_secret)
    app.on_shutdown.append(_end_calls)


