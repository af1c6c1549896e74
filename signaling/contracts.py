"""What the signaling edge needs from the rest of the server, declared here so it imports none of it.

``parley.server`` implements these (``Participant``, ``Room``, ``RoomRegistry``, ``Settings``) and
hands them over when it assembles the application; ``signaling`` only ever sees these shapes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from parley.agents.settings import AgentSettings
from parley.signaling import api_models as api
from parley.signaling import messages as m
from parley.signaling.settings import AuthSettings, HttpSettings, RoomSettings
from parley.turn.settings import TurnSettings

Emit = Callable[[m.ServerMessage], None]  # queue a message for one client
EndCall = Callable[[str, str], None]  # (error code, message): the call cannot go on


class Call(Protocol):
    """One person's media session, driven by their signaling socket."""

    name: str
    connected: asyncio.Event

    async def answer(self, sdp: str) -> m.Answer: ...
    async def accept_answer(self, sdp: str) -> None: ...
    async def add_candidate(self, candidate: m.Candidate) -> None: ...
    async def close(self) -> None: ...


class OpenCall(Protocol):
    """Make the media session of a socket that has just presented a valid token."""

    def __call__(
        self, participant_id: str, identity: str, name: str, emit: Emit, end_call: EndCall, disconnect: Callable[[], None],
    ) -> Call: ...


class Room(Protocol):
    config: api.Room  # as created: id, agent, limits

    @property
    def id(self) -> str: ...
    @property
    def created_by_dev(self) -> bool: ...
    def info(self) -> api.Room: ...
    async def admit(self, call: Any) -> list[m.ParticipantInfo]: ...
    async def remove(self, call: Any) -> None: ...


class RoomDirectory(Protocol):
    rooms: Mapping[str, Room]

    def get(self, room_id: str) -> Room: ...
    async def create(self, request: api.RoomCreate, *, by_dev: bool = False) -> Room: ...
    async def delete(self, room_id: str) -> None: ...
    def participant_count(self) -> int: ...
    def playout_totals(self) -> Any: ...
    async def close(self) -> None: ...


@dataclass(frozen=True)
class RoomRecord:
    """A room as any node sees it: its settings and people, and where it is served."""

    info: api.Room
    by_dev: bool  # created by dev mode: the dev token route may hand out tokens for it
    ws_url: str | None = None  # where its callers connect: the owner node's WebSocket; None: wherever they asked


class RoomService(Protocol):
    """The rooms a client can reach through this node: its own (one process) or a cluster's.

    ``signaling`` asks this for everything about rooms; ``RoomDirectory`` is this node's own rooms.
    """

    async def create(self, request: api.RoomCreate, *, by_dev: bool = False) -> api.Room: ...
    async def find(self, room_id: str) -> RoomRecord: ...
    async def list(self) -> list[api.Room]: ...
    async def delete(self, room_id: str) -> None: ...
    async def route(self, room_id: str) -> Room | str:
        """The room to admit a joining caller into here, or the WebSocket URL of the node that holds it."""
        ...
    async def nodes(self) -> api.NodeList: ...
    def trusted_origins(self) -> frozenset[str]:
        """Origins of the other nodes' pages, whose WebSockets a redirect sends here (none in one process)."""
        ...


class Admission(Protocol):
    """How many rooms' agents run, of how many that may."""

    @property
    def active(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    refused: int


class IceServersSettings(Protocol):
    stun_urls: list[str]


class EdgeSettings(Protocol):
    """The sections of the server's settings the edge reads."""

    http: HttpSettings
    auth: AuthSettings
    rooms: RoomSettings
    turn: TurnSettings
    agent: AgentSettings
    cache_dir: Path

    @property
    def ice(self) -> IceServersSettings: ...
