"""The aiohttp application: WebSocket signaling at ``/ws``, the REST API, ``/healthz``, and the bundled page."""

from __future__ import annotations

import logging
from importlib.resources import files
from pathlib import Path
from typing import Awaitable, Callable, Iterable

from aiohttp import web

from parley.core.net import is_loopback_host
from parley.signaling import api_models as api
from parley.signaling.api import PREFIX, Handler, add_api_routes, api_errors, error_response
from parley.signaling.api_docs import render_docs
from parley.signaling.connection import SignalingConnection
from parley.signaling.contracts import EdgeSettings
from parley.signaling.limits import origin_allowed, unjoined_socket_refusal
from parley.signaling.messages import MAX_MESSAGE_BYTES
from parley.signaling.openapi import build_openapi
from parley.signaling.state import STATE_KEY, ParleyState

log = logging.getLogger(__name__)


def web_dir() -> Path:
    """The bundled page and JS SDK: package data of ``parley.web`` (in a checkout, the repo's ``web/``)."""
    return Path(str(files("parley.web")))

OPENAPI_KEY = web.AppKey("openapi", dict)


async def websocket(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    origin = request.headers.get("Origin")
    trusted = (origin or "").lower() in state.directory.trusted_origins()  # a page another node of the cluster served
    if not trusted and not origin_allowed(origin, request.host, state.settings.http.allowed_origins):
        log.warning("WebSocket from origin %s refused (http.allowed_origins)", origin)
        return error_response(request, 403, "origin_not_allowed", f"pages from {origin} may not open this WebSocket (http.allowed_origins)")
    address = request.remote or ""
    refusal = unjoined_socket_refusal([(c.address, c.joined) for c in state.connections], address, state.settings.http)
    if refusal is not None:
        log.warning("WebSocket from %s refused: %s", address, refusal)
        return error_response(request, 429, "too_many_connections", refusal)
    # A message a little over the limit gets the typed message_too_large; far over, aiohttp closes with 1009.
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_MESSAGE_BYTES + 64 * 1024)
    connection = SignalingConnection(ws, state, request.query.get("token"), address)
    state.connections.add(connection)  # counted before the upgrade's await, so the caps hold under a burst
    try:
        await ws.prepare(request)
    except BaseException:
        state.connections.discard(connection)
        raise
    await connection.run()
    return ws


async def healthz(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    models = state.models
    names = {"vad": models.vad.name, "stt": models.stt.name, "llm": models.llm.name, "tts": models.tts.name} if models else {}
    if models is not None and models.end_of_turn is not None:
        names["end_of_turn"] = models.end_of_turn.name
    health = api.Health(status="ok", mode=state.settings.agent.mode, calls=state.calls(), rooms=len(state.rooms.rooms), models=names)
    return web.json_response(health.model_dump())


async def readyz(request: web.Request) -> web.Response:
    """Readiness for a load balancer: 200 when this server should get new calls, 503 (with why) when not."""
    state = request.app[STATE_KEY]
    reasons: list[str] = []
    if state.draining:
        reasons.append("the server is shutting down")
    llm = None
    models = state.models
    if models is not None:
        health = await models.llm.health()
        llm = api.LlmReadiness(status=health.status, restarts=health.restarts, detail=health.detail)
        if not health.ready:
            reasons.append(f"LLM {health.status}" + (f": {health.detail}" if health.detail else ""))
    admission = state.admission
    body = api.Readiness(
        ready=not reasons, draining=state.draining, reasons=reasons, llm=llm,
        agents_running=admission.active if admission else None, agent_capacity=admission.capacity if admission else None,
    )
    return web.json_response(body.model_dump(), status=200 if body.ready else 503)


async def stats(request: web.Request) -> web.Response:
    """Counters for benchmarks and dashboards: live calls and rooms, the agents' outgoing 20 ms frames,
    and STT batching (utterances, batches, model passes)."""
    state = request.app[STATE_KEY]
    return web.json_response({
        "calls": state.calls(), "rooms": len(state.rooms.rooms), "connections": len(state.connections),
        "playout": vars(state.rooms.playout_totals()),
        "inference": state.models.inference_stats() if state.models else {},
    })


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI_KEY])


async def api_docs(request: web.Request) -> web.Response:
    """The OpenAPI document as a readable page."""
    return web.Response(text=render_docs(request.app[OPENAPI_KEY]), content_type="text/html")


def host_guard(settings: EdgeSettings) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]] | None:
    """Refuse requests whose Host header this server does not answer to (DNS rebinding), or None when any is fine.

    ``http.allowed_hosts`` when set; otherwise, in dev mode on a loopback address, loopback names only,
    so a web page on another site cannot rebind its own name to 127.0.0.1 and use the dev routes.
    """
    allowed = {h.lower() for h in settings.http.allowed_hosts}
    local_dev = settings.auth.dev_mode and not settings.auth.dev_public and is_loopback_host(settings.http.host)
    if not allowed and not local_dev:
        return None

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.url.host or ""
        if host.lower() in allowed or (not allowed and is_loopback_host(host)):
            return await handler(request)
        log.warning("request for Host %r refused (http.allowed_hosts)", request.host)
        return error_response(request, 421, "host_not_allowed", f"this server does not answer for {host!r} (http.allowed_hosts)")

    return guard


@web.middleware
async def public_static_cors(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Let pages on other origins import the SDK (``<script type="module" src=".../web/parley.js">``)."""
    response = await handler(request)
    if request.path.startswith("/web/"):
        response.headers["Access-Control-Allow-Origin"] = "*"
    return response


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(web_dir() / "index.html")


def build_app(state: ParleyState, *, extra_routes: Iterable[web.RouteDef] = ()) -> web.Application:
    """The web application around ``state``: WebSocket, REST API, health, docs, the bundled page.

    The server assembles ``state`` (rooms, models, tokens) and adds what only it serves
    (``extra_routes``, e.g. ``/metrics``) and the lifecycle hooks.
    """
    settings = state.settings
    guard = host_guard(settings)
    middlewares = [*([guard] if guard else []), api_errors, public_static_cors]
    app = web.Application(client_max_size=MAX_MESSAGE_BYTES, middlewares=middlewares)
    app[STATE_KEY] = state
    app.router.add_get("/", index)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/stats", stats)
    app.router.add_routes(list(extra_routes))
    app.router.add_get(f"{PREFIX}/openapi.json", openapi)
    app.router.add_get(f"{PREFIX}/docs", api_docs)
    operations = add_api_routes(app, settings.auth.dev_mode)
    app[OPENAPI_KEY] = build_openapi(operations)
    app.router.add_static("/web/", web_dir(), show_index=False)
    return app
