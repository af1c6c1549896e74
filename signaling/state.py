"""``ParleyState``: what the web application shares between requests (settings, models, rooms, tokens)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from parley.agents.runtime import AgentModels
from parley.server.config import Settings
from parley.server.rooms import RoomRegistry
from parley.signaling.auth import TokenAuthority

if TYPE_CHECKING:
    from parley.signaling.connection import SignalingConnection
    from parley.signaling.metrics import ParleyMetrics


@dataclass
class ParleyState:
    settings: Settings
    models: AgentModels | None  # None in echo mode
    rooms: RoomRegistry
    tokens: TokenAuthority
    api_key: str  # the admin key in force (dev mode generates one when none is configured)
    metrics: "ParleyMetrics"
    connections: set["SignalingConnection"] = field(default_factory=set)

    def calls(self) -> int:
        """People connected to a room right now."""
        return self.rooms.participant_count()



STATE_KEY = web.AppKey("parley", ParleyState)
