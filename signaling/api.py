"""The REST API under ``/api/v1``: rooms and join tokens (admin, Bearer API key) and dev-mode tokens.

Each handler is declared with ``@operation`` — method, path, auth, body and response models — and
that declaration both registers the route and describes it in the OpenAPI document.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Literal

from aiohttp import web
from pydantic import BaseModel, ValidationError

from parley.core.errors import (
    AuthError, ConfigError, ConflictError, ForbiddenError, LimitError, NotFoundError, ParleyError, UnavailableError,
)
from parley.signaling import api_models as api
from parley.signaling.auth import check_api_key
from parley.signaling.contracts import RoomRecord
from parley.signaling.ice import ice_servers
from parley.signaling.state import STATE_KEY, ParleyState

log = logging.getLogger(__name__)
PREFIX = "/api/v1"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Auth = Literal["admin", "token", "dev", "none"]


@dataclass
class Operation:
    """One documented route."""

    method: str
    path: str
    handler: Handler
    summary: str
    auth: Auth = "admin"
    body: type[BaseModel] | None = None
    responses: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    dev_only: bool = False


OPERATIONS: list[Operation] = []


def operation(
    method: str, path: str, summary: str, *, auth: Auth = "admin", body: type[BaseModel] | None = None,
    responses: dict[int, type[BaseModel] | None] | None = None, dev_only: bool = False,
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        OPERATIONS.append(Operation(method, PREFIX + path, handler, summary, auth, body, responses or {}, dev_only))
        return handler

    return register


# ---- errors ----------------------------------------------------------------------------------

class UnsupportedMediaError(ParleyError):
    """A request body in a format the API does not take."""


_STATUS: dict[type[ParleyError], int] = {
    ForbiddenError: 403, AuthError: 401, NotFoundError: 404, ConflictError: 409, UnsupportedMediaError: 415, LimitError: 429, ConfigError: 422, UnavailableError: 503,
}


def error_response(request: web.Request, status: int, code: str, message: str) -> web.Response:
    """The JSON error body every HTTP refusal gets; counted with the errors clients receive."""
    request.app[STATE_KEY].count_error(code)
    body = api.ErrorBody(error=api.ErrorDetail(code=code, message=message))
    return web.json_response(body.model_dump(), status=status)


@web.middleware
async def api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure under /api/ is a JSON ``{"error": {"code", "message"}}`` with the right status."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except ParleyError as exc:
        status = next((s for kind, s in _STATUS.items() if isinstance(exc, kind)), 400)
        log.info("%s %s -> %d %s: %s", request.method, request.path, status, exc.code, exc)
        response = error_response(request, status, exc.code, str(exc))
        if exc.retry_after_s is not None:
            response.headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
        return response
    except web.HTTPNotFound:
        return error_response(request, 404, "not_found", f"no API route {request.path}")
    except web.HTTPMethodNotAllowed as exc:
        return error_response(request, 405, "method_not_allowed", f"{request.method} is not allowed on {request.path}; use {', '.join(sorted(exc.allowed_methods))}")
    except web.HTTPRequestEntityTooLarge:
        return error_response(request, 413, "body_too_large", "the request body is too large")


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    raw = await request.read()
    if not raw.strip():
        raw = b"{}"
    elif request.content_type != "application/json":
        # A page on another site can POST text/plain without a CORS preflight; JSON it cannot.
        raise UnsupportedMediaError(
            f"send the body as application/json, not {request.content_type or 'no Content-Type'}", code="unsupported_media_type",
        )
    try:
        json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ParleyError(f"the body is not valid JSON: {exc}", code="invalid_json") from exc
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        raise ConfigError(f"invalid body: {problems}", code="invalid_body") from exc


def _state(request: web.Request) -> ParleyState:
    return request.app[STATE_KEY]


def _admin(request: web.Request) -> ParleyState:
    state = _state(request)
    check_api_key(state.api_key, request.headers.get("Authorization"))
    return state


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status)


def ws_url(request: web.Request, token: str, node_ws_url: str | None = None) -> str:
    """The WebSocket URL a token is used at: the node holding the room (in a cluster), else the one asked."""
    if node_ws_url:
        return f"{node_ws_url}?token={token}"
    scheme = "wss" if request.secure else "ws"
    return f"{scheme}://{request.host}/ws?token={token}"


def _token_response(
    request: web.Request, state: ParleyState, room: RoomRecord, identity: str, name: str | None, ttl_s: int | None,
) -> web.Response:
    """Mint a join token and answer 201 with it, its expiry and the WebSocket URL that uses it."""
    room_id = room.info.id
    token, expires_at = state.tokens.mint(room_id, identity, name, ttl_s)
    url = ws_url(request, token, room.ws_url)
    return _json(api.Token(token=token, room=room_id, identity=identity, expires_at=expires_at, ws_url=url), 201)


# ---- rooms -----------------------------------------------------------------------------------


@operation("POST", "/rooms", "Create a room with its agent settings (in a cluster: on the least-loaded node)",
           body=api.RoomCreate, responses={201: api.Room})
async def create_room(request: web.Request) -> web.Response:
    state = _admin(request)
    body = await _body(request, api.RoomCreate)
    return _json(await state.directory.create(body), 201)


@operation("GET", "/rooms", "List rooms with their live participants (in a cluster: every node's)", responses={200: api.RoomList})
async def list_rooms(request: web.Request) -> web.Response:
    state = _admin(request)
    return _json(api.RoomList(rooms=await state.directory.list()))


@operation("GET", "/rooms/{room_id}", "A room and who is in it now", responses={200: api.Room})
async def get_room(request: web.Request) -> web.Response:
    state = _admin(request)
    return _json((await state.directory.find(request.match_info["room_id"])).info)


@operation("DELETE", "/rooms/{room_id}", "Delete a room; everyone in it is disconnected", responses={204: None})
async def delete_room(request: web.Request) -> web.Response:
    state = _admin(request)
    await state.directory.delete(request.match_info["room_id"])
    return web.Response(status=204)


@operation(
    "POST", "/rooms/{room_id}/tokens",
    "Mint a join token for one identity in this room (its ws_url points at the node that holds the room)",
    body=api.TokenRequest, responses={201: api.Token},
)
async def create_token(request: web.Request) -> web.Response:
    state = _admin(request)
    record = await state.directory.find(request.match_info["room_id"])
    body = await _body(request, api.TokenRequest)
    return _token_response(request, state, record, body.identity, body.name, body.ttl_s)


@operation(
    "POST", "/dev/token",
    "Dev mode only: a join token without an API key for a dev room (the default one, or one it creates); "
    "rooms made with the admin API are refused",
    auth="dev", body=api.DevTokenRequest, responses={201: api.Token}, dev_only=True,
)
async def dev_token(request: web.Request) -> web.Response:
    state = _state(request)
    body = await _body(request, api.DevTokenRequest)
    room_id = body.room or state.settings.rooms.default_room
    try:
        record = await state.directory.find(room_id)
    except NotFoundError:
        try:
            agent = api.AgentConfig(language=body.language) if body.language else api.AgentConfig()
            await state.directory.create(api.RoomCreate(id=room_id, agent=agent), by_dev=True)
        except ConflictError:  # created meanwhile by another request
            pass
        record = await state.directory.find(room_id)
    if not record.by_dev:
        raise ForbiddenError(f"room {room_id!r} was created with the admin API: ask your backend for a token", code="not_a_dev_room")
    if body.name and body.name.strip().lower() == record.info.agent.name.lower():
        raise ConfigError(f"{body.name!r} is the agent's name in this room: choose another", code="invalid_body")
    identity = body.identity or f"guest-{secrets.token_hex(4)}"
    return _token_response(request, state, record, identity, body.name, None)


@operation("GET", "/nodes", "The nodes serving rooms, with their load (one process: this one)", responses={200: api.NodeList})
async def list_nodes(request: web.Request) -> web.Response:
    state = _admin(request)
    return _json(await state.directory.nodes())


@operation(
    "GET", "/ice-servers", "STUN/TURN servers with a fresh TURN credential, for a holder of a join token",
    auth="token", responses={200: api.IceServers},
)
async def get_ice_servers(request: web.Request) -> web.Response:
    state = _state(request)
    scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
    token = bearer.strip() if scheme.lower() == "bearer" else request.query.get("token")
    grant = state.tokens.verify(token)
    servers = ice_servers(state.settings.ice.stun_urls, state.settings.turn, grant.identity)
    ttl = state.settings.turn.credential_ttl_s if state.settings.turn.enabled else None
    return _json(api.IceServers(ice_servers=servers, ttl_s=ttl))


def add_api_routes(app: web.Application, dev_mode: bool) -> list[Operation]:
    """Register the API's operations (the dev route only in dev mode); return those registered."""
    registered = [op for op in OPERATIONS if dev_mode or not op.dev_only]
    for op in registered:
        app.router.add_route(op.method, op.path, op.handler)
    return registered
