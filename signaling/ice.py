"""The ICE servers a client is handed (in ``joined`` and ``GET /api/v1/ice-servers``)."""

from __future__ import annotations

from parley.signaling import messages as m
from parley.turn.credentials import ice_server_entries
from parley.turn.settings import TurnSettings


def ice_servers(stun_urls: list[str], turn: TurnSettings, identity: str) -> list[m.IceServer]:
    """STUN, then TURN with a credential of ``identity``'s own."""
    return [
        m.IceServer(urls=e.urls, username=e.username, credential=e.credential)
        for e in ice_server_entries(stun_urls, turn, identity)
    ]
