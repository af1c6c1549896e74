"""The aiohttp application: WebSocket signaling at ``/ws``, the REST API, ``/healthz``, and the bundled page."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from aiohttp import web

from parley.agents.runtime import AgentModels
from parley.server.config import Settings
from parley.server.ice import fix_consent_after_close
from parley.server.rooms import RoomRegistry
from parley.signaling import api_models as api
from parley.signaling.api import PREFIX, add_api_routes, api_errors, error_response
from parley.signaling.api_docs import render_docs
from parley.signaling.auth import TokenAuthority
from parley.signaling.connection import SignalingConnection
from parley.signaling.limits import origin_allowed
from parley.signaling.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from parley.signaling.metrics import ParleyMetrics
from parley.signaling.messages import MAX_MESSAGE_BYTES
from parley.signaling.openapi import build_openapi
from parley.signaling.state import STATE_KEY, ParleyState

log = logging.getLogger(__name__)
WEB_DIR = Path(__file__).resolve().parent.parent / "web"
OPENAPI_KEY = web.AppKey("openapi", dict)


async def websocket(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, request.host, state.settings.http.allowed_origins):
        log.warning("WebSocket from origin %s refused (http.allowed_origins)", origin)
        return error_response(403, "origin_not_allowed", f"pages from {origin} may not open this WebSocket (http.allowed_origins)")
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_MESSAGE_BYTES * 4)
    await ws.prepare(request)
    await SignalingConnection(ws, state, request.query.get("token")).run()
    return ws


async def healthz(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    models = state.models
    names = {"vad": models.vad.name, "stt": models.stt.name, "llm": models.llm.name, "tts": models.tts.name} if models else {}
    health = api.Health(status="ok", mode=state.settings.agent.mode, calls=state.calls(), rooms=len(state.rooms.rooms), models=names)
    return web.json_response(health.model_dump())


async def stats(request: web.Request) -> web.Response:
    """Counters for benchmarks and dashboards: live calls and rooms, the agents' outgoing 20 ms frames,
    and STT batching (utterances, batches, model passes)."""
    state = request.app[STATE_KEY]
    return web.json_response({
        "calls": state.calls(), "rooms": len(state.rooms.rooms), "connections": len(state.connections),
        "playout": vars(state.rooms.playout_totals()),
        "inference": state.models.inference_stats() if state.models else {},
    })


async def prometheus(request: web.Request) -> web.Response:
    """Prometheus text format: live counts, turn latency histograms, errors by code, process figures."""
    body = request.app[STATE_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI_KEY])


async def api_docs(request: web.Request) -> web.Response:
    """The OpenAPI document as a readable page."""
    return web.Response(text=render_docs(request.app[OPENAPI_KEY]), content_type="text/html")


@web.middleware
async def public_static_cors(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Let pages on other origins import the SDK (``<script type="module" src=".../web/parley.js">``)."""
    response = await handler(request)
    if request.path.startswith("/web/"):
        response.headers["Access-Control-Allow-Origin"] = "*"
    return response


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "index.html")


async def _close_rooms(app: web.Application) -> None:
    await app[STATE_KEY].rooms.close()


async def _create_default_room(app: web.Application) -> None:
    state = app[STATE_KEY]
    await state.rooms.create(api.RoomCreate(id=state.settings.rooms.default_room))


def create_app(settings: Settings, models: AgentModels | None) -> web.Application:
    """Build the web application around already-loaded models."""
    fix_consent_after_close()
    auth = settings.auth
    api_key = auth.api_key
    if auth.dev_mode:
        log.warning("dev mode: the default room is open to anyone who can reach this server (auth.dev_mode = false to close it)")
        if not api_key:
            api_key = secrets.token_urlsafe(24)
            log.warning("dev mode: admin API key for this run: %s", api_key)
    if not auth.token_secret:
        log.info("auth.token_secret is not set: join tokens are signed with a random key and end with this process")
    metrics = ParleyMetrics()
    state = ParleyState(
        settings, models, RoomRegistry(settings, models, metrics.observe),
        TokenAuthority(auth.token_secret, auth.token_ttl_s, auth.max_token_ttl_s), api_key, metrics,
    )
    metrics.watch(state)
    app = web.Application(client_max_size=MAX_MESSAGE_BYTES, middlewares=[api_errors, public_static_cors])
    app[STATE_KEY] = state
    app.router.add_get("/", index)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/stats", stats)
    app.router.add_get("/metrics", prometheus)
    app.router.add_get(f"{PREFIX}/openapi.json", openapi)
    app.router.add_get(f"{PREFIX}/docs", api_docs)
    operations = add_api_routes(app, auth.dev_mode)
    app[OPENAPI_KEY] = build_openapi(operations)
    app.router.add_static("/web/", WEB_DIR, show_index=False)
    if auth.dev_mode:
        app.on_startup.append(_create_default_room)
    app.on_shutdown.append(_close_rooms)
    return app
