"""Every signaling message, client → server and server → client, as pydantic models discriminated by ``type``.

The JS SDK (``web/parley.js``) mirrors these names.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from parley.server.errors import SignalingError

MAX_MESSAGE_BYTES = 256 * 1024
MAX_SDP_CHARS = 64 * 1024


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- client → server ---------------------------------------------------------------------------


class Join(_Message):
    type: Literal["join"]
    room: str = Field("default", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str | None = Field(None, max_length=64)


class Offer(_Message):
    type: Literal["offer"]
    sdp: str = Field(min_length=1, max_length=MAX_SDP_CHARS)


class Candidate(_Message):
    type: Literal["candidate"]
    candidate: str = Field(max_length=1024)  # "" marks the end of candidates
    sdpMid: str | None = Field(None, max_length=32)
    sdpMLineIndex: int | None = Field(None, ge=0, le=64)


class Leave(_Message):
    type: Literal["leave"]


class Ping(_Message):
    type: Literal["ping"]


ClientMessage = Annotated[Union[Join, Offer, Candidate, Leave, Ping], Field(discriminator="type")]
_client_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
CLIENT_TYPES = ("join", "offer", "candidate", "leave", "ping")


# ---- server → client ---------------------------------------------------------------------------


class IceServer(_Message):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class Joined(_Message):
    type: Literal["joined"] = "joined"
    participant_id: str
    room: str
    ice_servers: list[IceServer] = []


class Answer(_Message):
    type: Literal["answer"] = "answer"
    sdp: str


class Transcript(_Message):
    type: Literal["transcript"] = "transcript"
    speaker: Literal["user", "agent"]
    participant_id: str
    turn_id: int
    text: str
    final: bool


AgentStateName = Literal["listening", "user_speaking", "thinking", "speaking", "paused"]


class AgentState(_Message):
    type: Literal["agent.state"] = "agent.state"
    state: AgentStateName
    turn_id: int | None = None


class AgentInterrupted(_Message):
    """The caller barged in: the reply stopped; ``heard_text`` is what the caller heard of it."""

    type: Literal["agent.interrupted"] = "agent.interrupted"
    turn_id: int
    heard_text: str


class AgentResumed(_Message):
    """The caller only said a backchannel (or made a noise): the reply carries on where it paused."""

    type: Literal["agent.resumed"] = "agent.resumed"
    turn_id: int


class TurnMetrics(_Message):
    type: Literal["turn.metrics"] = "turn.metrics"
    turn_id: int
    endpoint_wait_ms: float | None
    stt_ms: float | None
    llm_first_token_ms: float | None
    llm_first_chunk_ms: float | None
    tts_first_audio_ms: float | None
    playout_wait_ms: float | None
    first_audio_sent_ms: float | None


class Error(_Message):
    type: Literal["error"] = "error"
    code: str
    message: str


class Pong(_Message):
    type: Literal["pong"] = "pong"


ServerMessage = Union[Joined, Answer, Transcript, AgentState, AgentInterrupted, AgentResumed, TurnMetrics, Error, Pong]


def parse_client_message(raw: str | bytes) -> ClientMessage:
    """Validate one raw client message; raise ``SignalingError`` with a stable code on any defect."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise SignalingError(f"message is larger than {MAX_MESSAGE_BYTES} bytes", code="message_too_large")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise SignalingError(f"message is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(data, dict):
        raise SignalingError("message must be a JSON object", code="invalid_message")
    kind = data.get("type")
    if kind not in CLIENT_TYPES:
        raise SignalingError(
            f"unknown message type {str(kind)[:40]!r}; expected one of {', '.join(CLIENT_TYPES)}", code="unknown_type"
        )
    try:
        return _client_adapter.validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'message'}: {e['msg']}" for e in exc.errors()[:5])
        raise SignalingError(f"invalid {kind!r} message: {problems}", code="invalid_message") from exc
