"""``ParleyState``: what the web application shares between requests (settings, models, rooms, tokens)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from aiohttp import web

from parley.agents.runtime import AgentModels
from parley.signaling.auth import TokenAuthority
from parley.signaling.contracts import Admission, EdgeSettings, OpenCall, RoomDirectory, RoomService

if TYPE_CHECKING:
    from parley.signaling.connection import SignalingConnection


def _uncounted(code: str) -> None:
    return None


@dataclass
class ParleyState:
    settings: EdgeSettings
    models: AgentModels | None  # None in echo mode
    rooms: RoomDirectory  # this node's own rooms
    tokens: TokenAuthority
    api_key: str  # the admin key in force (dev mode generates one when none is configured)
    open_call: OpenCall  # makes the media session of a socket that joined
    # Every room a client can reach through this node: its own (``LocalRooms``) or a cluster's.
    directory: RoomService
    # Called once for every error a client receives, WebSocket or HTTP (the server counts them in /metrics).
    count_error: Callable[[str], None] = _uncounted
    connections: set["SignalingConnection"] = field(default_factory=set)
    admission: Admission | None = None  # the agent's capacity (None in echo mode)
    draining: bool = False  # shutting down: joins are refused with server_shutdown, /readyz says not ready

    def calls(self) -> int:
        """People connected to a room right now."""
        return self.rooms.participant_count()


STATE_KEY = web.AppKey("parley", ParleyState)
