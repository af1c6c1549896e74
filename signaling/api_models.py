"""Typed bodies of the REST API under ``/api/v1`` (they are also the OpenAPI document's schemas)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from parley.agents.settings import ReplyPolicy
from parley.signaling.messages import PRINTABLE_PATTERN, ROOM_ID_PATTERN, IceServer, ParticipantInfo


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentConfig(_Body):
    """The agent of a room; a field left out takes the server's configured default."""

    enabled: bool = True
    name: str | None = Field(None, min_length=1, max_length=40, pattern=PRINTABLE_PATTERN, description="Name people address the agent by")
    system_prompt: str | None = Field(None, max_length=8000)
    voice: str | None = Field(None, max_length=64, description="TTS voice (hibari: heart, …)")
    language: str | None = Field(
        None, max_length=16, description="The room's language: en, zh (Mandarin) or auto (each reply in the caller's language)"
    )
    reply_policy: ReplyPolicy | None = Field(
        None, description="always: answer every utterance; addressed: only when named; auto: addressed with 2+ people"
    )


class RoomCreate(_Body):
    id: str | None = Field(None, min_length=1, max_length=64, pattern=ROOM_ID_PATTERN, description="Generated if absent")
    agent: AgentConfig = AgentConfig()
    max_participants: int | None = Field(None, ge=1, le=64, description="People, not counting the agent")


class LanguageReply(_Body):
    """How the agent answers a caller heard speaking one language (rooms with language "auto")."""

    system_prompt: str
    voice: str


class ResolvedAgent(_Body):
    enabled: bool
    name: str
    system_prompt: str
    voice: str
    language: str
    reply_policy: ReplyPolicy
    replies: dict[str, LanguageReply] = Field(
        default_factory=dict, description="language auto: the system prompt and voice per language heard (en, zh)"
    )


class Room(_Body):
    id: str
    created_at: float
    agent: ResolvedAgent
    max_participants: int
    participants: list[ParticipantInfo]


class RoomList(_Body):
    rooms: list[Room]


class Node(BaseModel):
    """One Parley process serving rooms: alone, or one node of a cluster sharing rooms through Redis."""

    id: str
    pid: int = Field(description="Its process id on its machine")
    url: str = Field(description="Where clients reach this node's HTTP API and page")
    ws_url: str = Field(description="This node's signaling WebSocket")
    shared_url: str | None = Field(None, description="The port it shares with the other workers on its machine (--workers)")
    ice_addresses: list[str] = Field(description="Addresses it offers as ICE host candidates (media goes there)")
    calls: int = Field(description="People in its rooms now")
    rooms: int = Field(description="Rooms it holds, or has been given and not yet opened")
    cpu_percent: float = Field(description="Its process's CPU use over the last heartbeat, % of one core")
    draining: bool = False
    started_at: float
    seen_at: float = Field(description="Its last heartbeat (Unix time)")


class NodeList(BaseModel):
    cluster: bool = Field(description="False: one process (no cluster.redis_url); the list is this node")
    nodes: list[Node]


class TokenRequest(_Body):
    identity: str = Field(min_length=1, max_length=128, pattern=PRINTABLE_PATTERN, description="Your app's id for this user")
    name: str | None = Field(
        None, max_length=64, pattern=PRINTABLE_PATTERN, description="Display name others see (defaults to the identity)",
    )
    ttl_s: int | None = Field(None, ge=10, description="Lifetime in seconds (server default and maximum apply)")


class Token(_Body):
    token: str
    room: str
    identity: str
    expires_at: int = Field(description="Unix time")
    ws_url: str = Field(description="Where to connect: the WebSocket URL with the token in its query")


class DevTokenRequest(_Body):
    identity: str | None = Field(None, min_length=1, max_length=128, pattern=PRINTABLE_PATTERN)
    name: str | None = Field(None, max_length=64, pattern=PRINTABLE_PATTERN)
    room: str | None = Field(None, min_length=1, max_length=64, pattern=ROOM_ID_PATTERN)
    # A dev room this creates speaks this language (the bundled page's ?lang=zh); an existing room keeps its own.
    language: Literal["en", "zh", "auto"] | None = None


class ErrorDetail(_Body):
    code: str
    message: str


class ErrorBody(_Body):
    error: ErrorDetail


class Health(BaseModel):
    status: str
    mode: str
    calls: int
    rooms: int
    models: dict[str, str]


class LlmReadiness(BaseModel):
    status: str  # ready | restarting | failed | unreachable | closed
    restarts: int  # embedded LLM children restarted since start
    detail: str = ""


class Readiness(BaseModel):
    ready: bool  # 200 when true, 503 when not
    draining: bool  # shutting down: no new calls
    reasons: list[str]  # why not ready (empty when ready)
    llm: LlmReadiness | None = None  # None in echo mode
    agents_running: int | None = None  # rooms whose agent runs now (admission control)
    agent_capacity: int | None = None


class IceServers(_Body):
    """STUN/TURN servers for RTCPeerConnection's ``iceServers``; TURN credentials expire (TURN REST API)."""

    ice_servers: list[IceServer]
    ttl_s: int | None = Field(None, description="Lifetime of the TURN credential, when there is one")
