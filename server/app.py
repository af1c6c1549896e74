"""The composition root of the web application: rooms, tokens, metrics and the signaling edge, wired."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any, Callable

from aiohttp import web

from parley.agents.runtime import AgentModels
from parley.core.errors import ConflictError, UnavailableError
from parley.core.files import write_private
from parley.server.config import Settings
from parley.server import realtime
from parley.server.participant import Participant
from parley.server.prometheus import CONTENT_TYPE as METRICS_CONTENT_TYPE
from parley.server.prometheus import ParleyMetrics
from parley.server.rooms import RoomRegistry
from parley.signaling import api_models as api
from parley.signaling import messages as m
from parley.signaling.app import build_app
from parley.signaling.auth import TokenAuthority
from parley.signaling.contracts import Emit, EndCall, RoomService
from parley.signaling.directory import LocalRooms, NodeStatus, public_url
from parley.signaling.state import STATE_KEY, ParleyState

if TYPE_CHECKING:
    from parley.server.cluster import ClusterRooms

log = logging.getLogger(__name__)
METRICS_KEY = web.AppKey("parley-metrics", ParleyMetrics)
CLUSTER_KEY = web.AppKey("parley-cluster", object)  # the ClusterRooms, when this node is one of several


def _call_opener(settings: Settings) -> Callable[..., Participant]:
    def open_call(
        participant_id: str, identity: str, name: str, emit: Emit, end_call: EndCall, disconnect: Callable[[], None],
    ) -> Participant:
        participant = Participant(participant_id, identity, name, settings, emit, end_call)
        participant.disconnect = disconnect
        return participant

    return open_call


async def prometheus(request: web.Request) -> web.Response:
    """Prometheus text format: live counts, turn latency histograms, errors by code, process figures."""
    return web.Response(body=request.app[METRICS_KEY].render(), headers={"Content-Type": METRICS_CONTENT_TYPE})


async def _close_rooms(app: web.Application) -> None:
    state = app[STATE_KEY]
    await state.rooms.close(retry_after_s=state.settings.http.shutdown_retry_after_s)


async def drain(app: web.Application, grace_s: float) -> None:
    """The start of a graceful shutdown: refuse joins, tell every client, let replies being spoken finish.

    Clients get ``server_shutdown`` with ``retry_after_s`` (the JS SDK waits that long, then rejoins,
    through its token provider, wherever that sends it); replies in progress get up to ``grace_s``.
    The rooms are closed afterwards, by the app's shutdown (``_close_rooms``).
    """
    state = app[STATE_KEY]
    state.draining = True
    retry = state.settings.http.shutdown_retry_after_s
    notice = m.Error(code="server_shutdown", message=f"the server is shutting down within {grace_s:g} s", retry_after_s=retry)
    for connection in list(state.connections):
        if connection.joined:
            connection.emit(notice)
    replying = state.rooms.replies_in_progress()
    log.info("shutting down: %d call(s) told, %d repl(ies) in progress get up to %g s", len(state.connections), replying, grace_s)
    deadline = time.monotonic() + grace_s
    while state.rooms.replies_in_progress() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    if state.rooms.replies_in_progress():
        log.warning("shutting down with %d repl(ies) cut off after %g s (http.shutdown_grace_s)", state.rooms.replies_in_progress(), grace_s)


async def _create_default_room(app: web.Application) -> None:
    state = app[STATE_KEY]
    try:
        await state.directory.create(api.RoomCreate(id=state.settings.rooms.default_room), by_dev=True)
    except ConflictError:
        pass  # another node of the cluster made it
    except UnavailableError as exc:
        log.warning("dev mode: the default room is not created yet: %s (the dev token route creates it)", exc)


def _directory(settings: Settings, rooms: RoomRegistry, draining: Callable[[], bool]) -> tuple[RoomService, ClusterRooms | None]:
    """This node's ``RoomService``: its own rooms, or (with ``cluster.redis_url``) the cluster's."""
    cluster = settings.cluster
    http = settings.http
    url = public_url(cluster.public_url, http.host, http.port, tls=bool(http.cert))
    shared = public_url("", http.host, cluster.shared_port, tls=bool(http.cert)) if cluster.shared_port else None
    node = NodeStatus(cluster.node_id or NodeStatus.new_id(), url, list(settings.ice.host_addresses), draining, shared)
    if not cluster.redis_url:
        return LocalRooms(rooms, node), None
    from parley.server.cluster import ClusterRooms

    rooms_everywhere = ClusterRooms(cluster, rooms, node)
    return rooms_everywhere, rooms_everywhere


def _run_cluster(cluster: "ClusterRooms") -> Callable[[web.Application], Any]:
    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        await cluster.start()
        yield
        await cluster.stop()

    return lifecycle


def create_app(settings: Settings, models: AgentModels | None) -> web.Application:
    """Build the web application around already-loaded models (``None``: echo mode)."""
    auth = settings.auth
    api_key = auth.api_key
    if auth.dev_mode:
        log.warning("dev mode: the default room is open to anyone who can reach this server (auth.dev_mode = false to close it)")
        if not api_key:
            api_key = secrets.token_urlsafe(24)
            log.warning("dev mode: the admin API key for this run is in %s", write_private(settings.cache_dir / "dev-admin-key", api_key + "\n"))
    if not auth.token_secret:
        log.info("auth.token_secret is not set: join tokens are signed with a random key and end with this process")
    metrics = ParleyMetrics()
    rooms = RoomRegistry(settings, models, metrics.observe)
    directory, cluster = _directory(settings, rooms, lambda: state.draining)
    state = ParleyState(
        settings, models, rooms,
        TokenAuthority(auth.token_secret, auth.token_ttl_s, auth.max_token_ttl_s), api_key,
        open_call=_call_opener(settings), directory=directory, count_error=metrics.count_error, admission=rooms.admission,
    )
    metrics.watch(state)
    app = build_app(state, extra_routes=[web.get("/metrics", prometheus)])
    realtime.install(app)
    app[METRICS_KEY] = metrics
    if cluster is not None:
        app[CLUSTER_KEY] = cluster
        app.cleanup_ctx.append(_run_cluster(cluster))
    if auth.dev_mode:
        app.on_startup.append(_create_default_room)
    app.on_shutdown.append(_close_rooms)
    return app
