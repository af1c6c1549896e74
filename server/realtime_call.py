"""``RealtimeCall``: one OpenAI Realtime session on Parley's pipeline — client events in, an ``AgentSession`` doing the work.

What the agent does is told to the client by ``AgentEventRelay`` (``server/realtime_relay.py``); how
the events travel is ``server/realtime_transport.py``; the HTTP side is ``server/realtime.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import numpy as np
from aiortc.mediastreams import MediaStreamTrack

from parley.agents.profile import AgentProfile, Speaker
from parley.agents.runtime import AgentModels
from parley.agents.session import AgentSession
from parley.agents.settings import VadSettings
from parley.core.audio import AGENT_RATE, int16_to_float, resample
from parley.core.errors import BackendError, ModelLoadError
from parley.server.config import Settings
from parley.server.playout import PlayoutTrack
from parley.server.realtime_audio import PcmInput, decode_audio
from parley.server.realtime_relay import AgentEventRelay
from parley.server.realtime_transport import EventTransport
from parley.signaling import realtime_protocol as rp

log = logging.getLogger(__name__)


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
        self._pending: list[asyncio.Task[None]] = []  # transcriptions of committed audio
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()  # server events, in order
        self._relay = AgentEventRelay(
            self.post, self.events, lambda: self.config, lambda: self._mic.delivered_ms, settings.vad.preroll_ms, self._playout,
        )
        self._items = self._relay.items

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
        writer = asyncio.create_task(self._write(), name=f"realtime-out-{self.id}")
        profile = AgentProfile(self._settings.agent.name, self.config.instructions, self._settings.agent.language,
                               "always", self._models.tts)
        self._session = AgentSession(self._models, self._settings, self._playout, self._relay.on_agent_event, self.id, profile)
        if not self._media:  # in a WebRTC call the voice is the peer connection's own track
            self._voice_pump = asyncio.create_task(self._relay.pump_voice(), name=f"realtime-voice-{self.id}")
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
        if isinstance(event, rp.SessionUpdate):
            await self._update_session(event.session)
        elif isinstance(event, rp.AudioAppend):
            if self._media:
                raise rp.RealtimeProtocolError("invalid_event", "in a WebRTC call the audio travels on the media track, not in events")
            pcm = decode_audio(event.audio)
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
        assert self._session is not None
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
            self._session.profile.tts = tts
        detection_changed = config.turn_detection != self.config.turn_detection
        self.config = config
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

    async def _hear(self, pcm: np.ndarray) -> str:
        """The words of 24 kHz pcm16 audio the client sent (``BackendError`` on failure)."""
        assert self._session is not None
        return await self._session.transcribe(resample(int16_to_float(pcm), rp.AUDIO_RATE, AGENT_RATE))

    async def _transcribe_item(self, item_id: str, pcm: np.ndarray) -> None:
        assert self._session is not None
        try:
            text = await self._hear(pcm)
        except BackendError as exc:
            self.post(self.events.make("conversation.item.input_audio_transcription.failed", item_id=item_id, content_index=0,
                                       error={"type": "server_error", "code": exc.code, "message": str(exc)}))
            return
        if text:
            self._items.message_by_item[item_id] = self._session.remember("user", text)
        self._relay.transcribed(item_id, text, pcm.size / rp.AUDIO_RATE)

    async def _create_item(self, event: rp.ItemCreate) -> None:
        assert self._session is not None
        item = event.item
        item_id = item.id or rp.new_id("item")
        text = " ".join(part.text or part.transcript or "" for part in item.content if part.text or part.transcript).strip()
        audio = [part.audio for part in item.content if part.audio]
        if item.role == "user" and audio:
            try:
                heard = await self._hear(np.concatenate([decode_audio(a) for a in audio]))
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
        if self._relay.open_responses():
            raise rp.RealtimeProtocolError(
                "conversation_already_has_active_response", "a response is in progress: cancel it or wait for response.done",
            )
        if self._pending:  # committed audio still being transcribed: it is part of the question
            await asyncio.gather(*self._pending, return_exceptions=True)
            self._pending.clear()
        turn_id = self._session.reply_now()
        self._relay.client_turns.add(turn_id)
        self._relay.open_response(turn_id)

    def _cancel_response(self, response_id: str | None) -> None:
        assert self._session is not None
        open_ = [r for r in self._relay.open_responses() if response_id is None or r.id == response_id]
        if not open_:
            raise rp.RealtimeProtocolError("response_cancel_not_active", "there is no response in progress to cancel")
        self._relay.cancel_reason = "client_cancelled"
        if not self._session.cancel_reply():  # not generating any more (e.g. not started): close it here
            for response in open_:
                self._relay.finish(response, "cancelled", "client_cancelled")
        self._relay.cancel_reason = "turn_detected"
