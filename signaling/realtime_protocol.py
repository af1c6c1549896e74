"""OpenAI's Realtime protocol, as Parley speaks it: the client events it reads and the server events it writes.

Wire only: the session configuration a client sets (``session.update``, in the GA shape or the beta
one), the typed client events, and builders for server events with the GA names — or the beta names
(``response.audio.delta`` …) for a client that asked for the beta (``OpenAI-Beta: realtime=v1``).
What the events *do* is ``parley.server.realtime``'s business. docs/realtime.md maps every event.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

AUDIO_RATE = 24_000  # pcm16 mono, both ways: the only audio format this endpoint speaks
MAX_APPEND_BYTES = 512 * 1024  # base64 text of one input_audio_buffer.append (~8 s of 24 kHz pcm16)
# The hosted API's voice names: Parley has none of them, so any of these means "the server's default voice".
OPENAI_VOICES = frozenset("alloy ash ballad coral echo sage shimmer verse marin cedar fable onyx nova".split())

# GA name → beta name, for clients on the beta protocol. GA events missing here have the same beta name;
# conversation.item.done has none (beta clients do not get it).
BETA_NAMES = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "conversation.item.added": "conversation.item.created",
}
GA_ONLY = frozenset({"conversation.item.done"})


class RealtimeProtocolError(Exception):
    """A client event Parley refuses; sent as an ``error`` event (the session goes on)."""

    def __init__(self, code: str, message: str, *, param: str | None = None, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.code, self.message, self.param, self.kind = code, message, param, kind


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


# ---- the session ----------------------------------------------------------------------------------

class TurnDetection(BaseModel):
    """``server_vad``: turns end on ``silence_duration_ms`` of silence; ``semantic_vad``: on meaning
    (Parley's end-of-turn model, with the server's own thresholds)."""

    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    prefix_padding_ms: int = Field(300, ge=0, le=2000)
    silence_duration_ms: int = Field(500, ge=100, le=5000)
    create_response: bool = True
    interrupt_response: bool = True
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    model_config = ConfigDict(extra="ignore")


class SessionConfig(BaseModel):
    """What a Realtime session is set to; ``None`` turn detection: the client commits turns itself."""

    model: str = "parley"
    instructions: str = ""
    voice: str = "default"
    turn_detection: TurnDetection | None = TurnDetection(type="semantic_vad")
    transcribe_input: bool = True
    transcription_model: str = "whisper"


def _audio_format(value: Any, param: str) -> None:
    """Only 24 kHz pcm16 is spoken here: GA ``{"type": "audio/pcm", "rate": 24000}`` or beta ``"pcm16"``."""
    if value is None:
        return
    ok = value == "pcm16" if isinstance(value, str) else (
        isinstance(value, dict) and value.get("type") == "audio/pcm" and value.get("rate", AUDIO_RATE) == AUDIO_RATE
    )
    if not ok:
        raise RealtimeProtocolError(
            "invalid_value", f"unsupported audio format {value!r}: Parley speaks pcm16 mono at 24 kHz only", param=param,
        )


def _turn_detection(value: Any, param: str) -> TurnDetection | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RealtimeProtocolError("invalid_value", "turn_detection must be an object or null", param=param)
    try:
        return TurnDetection.model_validate(value)
    except ValidationError as exc:
        raise RealtimeProtocolError("invalid_value", f"turn_detection: {exc.errors()[0]['msg']}", param=param) from exc


def apply_session_update(config: SessionConfig, session: Any) -> SessionConfig:
    """``config`` with a ``session.update``'s ``session`` applied (GA or beta shape); the fields it leaves out stay."""
    if not isinstance(session, dict):
        raise RealtimeProtocolError("invalid_value", "session must be an object", param="session")
    update: dict[str, Any] = {}
    if isinstance(session.get("instructions"), str):
        update["instructions"] = session["instructions"]
    modalities = session.get("output_modalities", session.get("modalities"))
    if modalities is not None and "audio" not in modalities:
        raise RealtimeProtocolError(
            "invalid_value", "text-only responses are not supported: Parley always answers with audio (and its transcript)",
            param="session.output_modalities",
        )
    audio = session.get("audio") if isinstance(session.get("audio"), dict) else {}
    audio_in = audio.get("input") if isinstance(audio.get("input"), dict) else {}
    audio_out = audio.get("output") if isinstance(audio.get("output"), dict) else {}
    _audio_format(audio_in.get("format"), "session.audio.input.format")
    _audio_format(audio_out.get("format"), "session.audio.output.format")
    _audio_format(session.get("input_audio_format"), "session.input_audio_format")
    _audio_format(session.get("output_audio_format"), "session.output_audio_format")
    voice = audio_out.get("voice", session.get("voice"))
    if voice is not None:
        if not isinstance(voice, str) or not voice:
            raise RealtimeProtocolError("invalid_value", "voice must be a name", param="session.voice")
        update["voice"] = "default" if voice in OPENAI_VOICES else voice
    if "turn_detection" in audio_in:
        update["turn_detection"] = _turn_detection(audio_in["turn_detection"], "session.audio.input.turn_detection")
    if "turn_detection" in session:
        update["turn_detection"] = _turn_detection(session["turn_detection"], "session.turn_detection")
    transcription = audio_in.get("transcription", session.get("input_audio_transcription", ...))
    if transcription is not ...:
        update["transcribe_input"] = transcription is not None
        if isinstance(transcription, dict) and isinstance(transcription.get("model"), str):
            update["transcription_model"] = transcription["model"]
    if isinstance(session.get("model"), str):
        update["model"] = session["model"]
    return config.model_copy(update=update)


def session_object(config: SessionConfig, session_id: str, beta: bool) -> dict[str, Any]:
    """The ``session`` of ``session.created`` / ``session.updated``."""
    pcm: dict[str, Any] = {"type": "audio/pcm", "rate": AUDIO_RATE}
    detection = config.turn_detection.model_dump() if config.turn_detection is not None else None
    if detection is not None and detection["type"] == "semantic_vad":
        detection = {k: detection[k] for k in ("type", "eagerness", "create_response", "interrupt_response")}
    transcription = {"model": config.transcription_model} if config.transcribe_input else None
    if beta:
        return {
            # no "model": the beta SDK types allow only OpenAI's own model names there
            "id": session_id, "object": "realtime.session", "modalities": ["audio", "text"],
            "instructions": config.instructions, "voice": config.voice, "input_audio_format": "pcm16",
            "output_audio_format": "pcm16", "input_audio_transcription": transcription, "turn_detection": detection,
        }
    return {
        "type": "realtime", "object": "realtime.session", "id": session_id, "model": config.model,
        "output_modalities": ["audio"], "instructions": config.instructions,
        "audio": {
            "input": {"format": pcm, "transcription": transcription, "turn_detection": detection},
            "output": {"format": pcm, "voice": config.voice},
        },
    }


# ---- client events ---------------------------------------------------------------------------------

class _ClientEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    event_id: str | None = None


class SessionUpdate(_ClientEvent):
    type: Literal["session.update"]
    session: dict[str, Any]


class AudioAppend(_ClientEvent):
    type: Literal["input_audio_buffer.append"]
    audio: str = Field(max_length=MAX_APPEND_BYTES)


class AudioCommit(_ClientEvent):
    type: Literal["input_audio_buffer.commit"]


class AudioClear(_ClientEvent):
    type: Literal["input_audio_buffer.clear"]


class ItemContent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["input_text", "input_audio", "text", "output_text", "audio", "output_audio"]
    text: str | None = None
    audio: str | None = None
    transcript: str | None = None


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str | None = Field(None, max_length=64)
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system"]
    content: list[ItemContent] = Field(min_length=1, max_length=16)


class ItemCreate(_ClientEvent):
    type: Literal["conversation.item.create"]
    item: ItemIn
    previous_item_id: str | None = None


class ItemTruncate(_ClientEvent):
    type: Literal["conversation.item.truncate"]
    item_id: str
    content_index: int = 0
    audio_end_ms: int = Field(ge=0)


class ItemDelete(_ClientEvent):
    type: Literal["conversation.item.delete"]
    item_id: str


class ResponseCreate(_ClientEvent):
    type: Literal["response.create"]
    response: dict[str, Any] | None = None


class ResponseCancel(_ClientEvent):
    type: Literal["response.cancel"]
    response_id: str | None = None


ClientEvent = (
    SessionUpdate | AudioAppend | AudioCommit | AudioClear | ItemCreate | ItemTruncate | ItemDelete | ResponseCreate | ResponseCancel
)
_EVENTS: dict[str, type[BaseModel]] = {
    model.model_fields["type"].annotation.__args__[0]: model  # type: ignore[union-attr]
    for model in (SessionUpdate, AudioAppend, AudioCommit, AudioClear, ItemCreate, ItemTruncate, ItemDelete, ResponseCreate, ResponseCancel)
}


def parse_client_event(data: Any) -> ClientEvent:
    """One client event, typed; ``RealtimeProtocolError`` for an unknown type or a malformed one."""
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise RealtimeProtocolError("invalid_event", "an event is a JSON object with a string 'type'")
    model = _EVENTS.get(data["type"])
    if model is None:
        raise RealtimeProtocolError("unknown_event", f"unknown or unsupported event type {data['type']!r}", param="type")
    try:
        return model.model_validate(data)  # type: ignore[return-value]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        code = "audio_too_large" if where == "audio" and first["type"] == "string_too_long" else "invalid_value"
        raise RealtimeProtocolError(code, f"{data['type']}: {where}: {first['msg']}", param=where) from exc


# ---- server events ---------------------------------------------------------------------------------

class ServerEvents:
    """Builds server events with fresh ids, in the GA or the beta dialect (``None``: not sent in it)."""

    def __init__(self, beta: bool) -> None:
        self.beta = beta

    def make(self, kind: str, **fields: Any) -> dict[str, Any] | None:
        if self.beta and kind in GA_ONLY:
            return None
        name = BETA_NAMES.get(kind, kind) if self.beta else kind
        return {"type": name, "event_id": new_id("event"), **fields}

    def error(self, code: str, message: str, *, event_id: str | None = None, param: str | None = None,
              kind: str = "invalid_request_error") -> dict[str, Any]:
        return {"type": "error", "event_id": new_id("event"),
                "error": {"type": kind, "code": code, "message": message, "param": param, "event_id": event_id}}

    def user_item(self, item_id: str, transcript: str | None, *, text: bool = False) -> dict[str, Any]:
        part = {"type": "input_text", "text": transcript} if text else {"type": "input_audio", "transcript": transcript}
        return {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
                "content": [part]}

    def assistant_item(self, item_id: str, transcript: str | None, status: str) -> dict[str, Any]:
        return {"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant", "status": status,
                "content": [{"type": "audio" if self.beta else "output_audio", "transcript": transcript}]}

    def response(self, response_id: str, status: str, output: list[dict[str, Any]], reason: str | None = None) -> dict[str, Any]:
        details = None
        if status in ("cancelled", "incomplete", "failed"):
            details = {"type": status, "reason": reason}
        return {"id": response_id, "object": "realtime.response", "status": status, "status_details": details,
                "output": output, "output_modalities": ["audio"]}
