"""The aiohttp application: WebSocket signaling at ``/ws``, ``/healthz``, and the bundled web page."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from parley.agents.runtime import AgentModels
from parley.server.config import Settings
from parley.server.playout import PlayoutStats
from parley.signaling.connection import SignalingConnection
from parley.signaling.messages import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)
WEB_DIR = Path(__file__).resolve().parent.parent / "web"


@dataclass
class ParleyState:
    settings: Settings
    models: AgentModels | None  # None in echo mode
    connections: set[SignalingConnection] = field(default_factory=set)
    closed_playout: PlayoutStats = field(default_factory=PlayoutStats)  # totals of calls that ended

    def playout_totals(self) -> PlayoutStats:
        """Outgoing-frame counters over every call, live and ended."""
        total = PlayoutStats(**vars(self.closed_playout))
        for conn in self.connections:
            if conn.call is not None:
                total.add(conn.call.playout.stats)
        return total


STATE_KEY = web.AppKey("parley", ParleyState)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_MESSAGE_BYTES * 4)
    await ws.prepare(request)
    await SignalingConnection(ws, request.app[STATE_KEY]).run()
    return ws


async def healthz(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    models = state.models
    names = {"vad": models.vad.name, "stt": models.stt.name, "llm": models.llm.name, "tts": models.tts.name} if models else {}
    return web.json_response({"status": "ok", "mode": state.settings.agent.mode, "calls": len(state.connections), "models": names})


async def stats(request: web.Request) -> web.Response:
    """Counters for benchmarks and dashboards: live calls and outgoing 20 ms frames (sent, late, resyncs)."""
    state = request.app[STATE_KEY]
    return web.json_response({"calls": len(state.connections), "playout": vars(state.playout_totals())})


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "index.html")


async def _close_calls(app: web.Application) -> None:
    state = app[STATE_KEY]
    await asyncio.gather(*(c.call.close() for c in list(state.connections) if c.call), return_exceptions=True)


def create_app(settings: Settings, models: AgentModels | None) -> web.Application:
    """Build the web application around already-loaded models."""
    app = web.Application(client_max_size=MAX_MESSAGE_BYTES)
    app[STATE_KEY] = ParleyState(settings, models)
    app.router.add_get("/", index)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/stats", stats)
    app.router.add_static("/web/", WEB_DIR, show_index=False)
    app.on_shutdown.append(_close_calls)
    return app
