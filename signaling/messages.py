"""Every signaling message, client → server and server → client, as pydantic models discriminated by ``type``.

The JS SDK (``web/parley.js``) mirrors these names.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from parley.agents.dialogue_state import State
from parley.agents.stage_timer import STAGES
from parley.core.errors import SignalingError

MAX_MESSAGE_BYTES = 256 * 1024
MAX_SDP_CHARS = 64 * 1024


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- client → server ---------------------------------------------------------------------------


ROOM_ID_PATTERN = r"^[A-Za-z0-9_.-]+$"
# Names and identities are shown to others and written to logs: no control characters or line breaks.
PRINTABLE_PATTERN = r"^[^\x00-\x1f\x7f\x85\u2028\u2029]*$"
MAX_TOKEN_CHARS = 4096


class Join(_Message):
    """Join a room. The token comes here or in the WebSocket URL (``/ws?token=…``); its room wins."""

    type: Literal["join"]
    token: str | None = Field(None, max_length=MAX_TOKEN_CHARS)
    room: str | None = Field(None, min_length=1, max_length=64, pattern=ROOM_ID_PATTERN)
    # Ignored: the display name is the token's (a caller cannot pose as someone else or as the agent).
    name: str | None = Field(None, max_length=64)


class Offer(_Message):
    type: Literal["offer"]
    sdp: str = Field(min_length=1, max_length=MAX_SDP_CHARS)


class Candidate(_Message):
    type: Literal["candidate"]
    candidate: str = Field(max_length=1024)  # "" marks the end of candidates
    sdpMid: str | None = Field(None, max_length=32)
    sdpMLineIndex: int | None = Field(None, ge=0, le=64)


class ClientAnswer(_Message):
    """The client's answer to a renegotiation ``offer`` from the server."""

    type: Literal["answer"]
    sdp: str = Field(min_length=1, max_length=MAX_SDP_CHARS)


class Leave(_Message):
    type: Literal["leave"]


class Ping(_Message):
    type: Literal["ping"]


ClientMessage = Annotated[Union[Join, Offer, ClientAnswer, Candidate, Leave, Ping], Field(discriminator="type")]
_client_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
CLIENT_TYPES = ("join", "offer", "answer", "candidate", "leave", "ping")


# ---- server → client ---------------------------------------------------------------------------


class IceServer(_Message):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class ParticipantInfo(_Message):
    """Someone in a room: a person (``human``) or the room's AI agent (``agent``)."""

    participant_id: str
    identity: str
    name: str
    kind: Literal["human", "agent"]
    joined_at: float  # Unix time


class Joined(_Message):
    type: Literal["joined"] = "joined"
    participant_id: str
    room: str
    identity: str = ""
    ice_servers: list[IceServer] = []
    participants: list[ParticipantInfo] = []  # everyone already there, the agent included


class Answer(_Message):
    """The server's answer to the client's offer. ``tracks`` maps each m-line ``mid`` to whose audio it carries."""

    type: Literal["answer"] = "answer"
    sdp: str
    tracks: dict[str, str] = {}


class ServerOffer(_Message):
    """Renegotiation: someone joined or left. Answer with an ``answer`` message; ``tracks`` maps mids to participants."""

    type: Literal["offer"] = "offer"
    sdp: str
    tracks: dict[str, str] = {}


class ParticipantJoined(_Message):
    type: Literal["participant.joined"] = "participant.joined"
    participant: ParticipantInfo


class ParticipantLeft(_Message):
    type: Literal["participant.left"] = "participant.left"
    participant_id: str


class Transcript(_Message):
    type: Literal["transcript"] = "transcript"
    speaker: Literal["user", "agent"]
    participant_id: str  # who spoke: a person, or the agent
    name: str = ""  # their display name
    turn_id: int
    text: str
    final: bool
    # A person's transcripts with the same utterance_id are one line: interims, then the final, and a
    # question continued after a pause (folded) updates the same line. None for the agent's transcripts.
    utterance_id: int | None = None


AgentStateName = Literal[tuple(state.value for state in State)]  # type: ignore[valid-type]  # the states are defined once, in agents


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
    end_of_turn_ms: float | None = None  # the end-of-turn model's inference time, within endpoint_wait_ms
    sentence_end_ms: float | None = None  # the LLM's judgement of whether the words stop mid-sentence


# The wire schema spells the stages out (clients read them here); they must be the pipeline's, in order.
if tuple(TurnMetrics.model_fields)[2:] != STAGES:
    raise RuntimeError(f"TurnMetrics' fields {tuple(TurnMetrics.model_fields)[2:]} differ from agents' STAGES {STAGES}")


class Error(_Message):
    type: Literal["error"] = "error"
    code: str
    message: str
    # busy, server_shutdown: when trying again (here or, for server_shutdown, at another server) makes sense.
    retry_after_s: float | None = None


class Redirect(_Message):
    """This node does not hold the room: open a WebSocket to ``url`` (the owner node) with the same
    token and send ``join`` there. The SDKs follow it; media then flows to that node directly."""

    type: Literal["redirect"] = "redirect"
    url: str  # ws:// or wss:// URL of the owner node's /ws
    room: str


class Pong(_Message):
    type: Literal["pong"] = "pong"


ServerMessage = Union[
    Joined, Answer, ServerOffer, ParticipantJoined, ParticipantLeft, Transcript,
    AgentState, AgentInterrupted, AgentResumed, TurnMetrics, Error, Redirect, Pong,
]


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
