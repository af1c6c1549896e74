"""The aiohttp application: WebSocket signaling at ``/ws``, ``/healthz``, and the bundled web page."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from parley.agents.runtime import AgentModels
from parley.server.config import Settings
from parley.signaling.connection import SignalingConnection
from parley.signaling.messages import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)
WEB_DIR = Path(__file__).resolve().parent.parent / "web"


@dataclass
class ParleyState:
    settings: Settings
    models: AgentModels
    connections: set[SignalingConnection] = field(default_factory=set)


STATE_KEY = web.AppKey("parley", ParleyState)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_MESSAGE_BYTES * 4)
    await ws.prepare(request)
    await SignalingConnection(ws, request.app[STATE_KEY]).run()
    return ws


async def healthz(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    models = state.models
    return web.json_response({
        "status": "ok",
        "calls": len(state.connections),
        "models": {"vad": models.vad.name, "stt": models.stt.name, "llm": models.llm.name, "tts": models.tts.name},
    })


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "index.html")


async def _close_calls(app: web.Application) -> None:
    state = app[STATE_KEY]
    await asyncio.gather(*(c.call.close() for c in list(state.connections) if c.call), return_exceptions=True)


def create_app(settings: Settings, models: AgentModels) -> web.Application:
    """Build the web application around already-loaded models."""
    app = web.Application(client_max_size=MAX_MESSAGE_BYTES)
    app[STATE_KEY] = ParleyState(settings, models)
    app.router.add_get("/", index)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/healthz", healthz)
    app.router.add_static("/web/", WEB_DIR, show_index=False)
    app.on_shutdown.append(_close_calls)
    return app
