"""The REST API and join tokens against a real app: auth, rooms, limits, refusals, the OpenAPI document."""

import time

import aiohttp
import jwt
import pytest
from aiohttp import web

from parley.signaling.client import ParleyClient
from parley.signaling.state import STATE_KEY
from tests.conftest import TEST_API_KEY, serve_app

ADMIN = {"Authorization": f"Bearer {TEST_API_KEY}"}


async def call(url: str, method: str, path: str, *, headers=ADMIN, **kw) -> tuple[int, dict | None]:
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.request(method, f"{url}{path}", **kw) as response:
            body = await response.json() if response.content_type == "application/json" else None
            return response.status, body


async def errors_counted(url: str) -> dict[str, float]:
    """``parley_errors_total`` from /metrics, by code."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/metrics") as response:
            text = await response.text()
    prefix = 'parley_errors_total{code="'
    return {line[len(prefix):].split('"')[0]: float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix)}


async def join_with(url: str, token: str | None, join: dict | None = None) -> dict:
    """Open /ws (with ``token`` in the URL when given), send a join, return the server's reply."""
    async with aiohttp.ClientSession() as http:
        query = f"?token={token}" if token else ""
        async with http.ws_connect(f"{url}/ws{query}") as ws:
            await ws.send_json({"type": "join", **(join or {})})
            return await ws.receive_json(timeout=10)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/rooms"), ("POST", "/api/v1/rooms"), ("GET", "/api/v1/rooms/default"),
     ("DELETE", "/api/v1/rooms/default"), ("POST", "/api/v1/rooms/default/tokens")],
)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": TEST_API_KEY}])
async def test_admin_routes_need_the_api_key(server_url, method, path, headers):
    status, body = await call(server_url, method, path, headers=headers, json={"identity": "x"})
    assert status == 401 and body["error"]["code"] == "unauthorized", (status, body)


async def test_rooms_lifecycle_with_live_participants(server_url):
    errors_before = await errors_counted(server_url)
    status, room = await call(server_url, "POST", "/api/v1/rooms", json={"id": "lifecycle", "agent": {"name": "Robin", "reply_policy": "always"}, "max_participants": 3})
    assert status == 201 and room["id"] == "lifecycle" and room["agent"]["name"] == "Robin" and room["participants"] == []
    assert (await call(server_url, "POST", "/api/v1/rooms", json={"id": "lifecycle"}))[0] == 409
    status, token = await call(server_url, "POST", "/api/v1/rooms/lifecycle/tokens", json={"identity": "u-42", "name": "Ada"})
    assert status == 201 and token["room"] == "lifecycle" and token["expires_at"] > time.time()
    assert token["ws_url"].endswith(f"/ws?token={token['token']}")

    caller = ParleyClient(server_url, token=token["token"])
    await caller.start()
    try:
        status, live = await call(server_url, "GET", "/api/v1/rooms/lifecycle")
        assert status == 200
        kinds = {p["kind"]: p for p in live["participants"]}
        assert kinds["human"]["identity"] == "u-42" and kinds["human"]["name"] == "Ada"
        assert kinds["human"]["participant_id"] == caller.participant_id and kinds["agent"]["name"] == "Robin"
        status, listing = await call(server_url, "GET", "/api/v1/rooms")
        assert "lifecycle" in [r["id"] for r in listing["rooms"]]

        assert (await call(server_url, "DELETE", "/api/v1/rooms/lifecycle"))[0] == 204
        closed = await caller.wait_for(lambda m: m["type"] == "error", 10)
        assert closed["code"] == "room_closed"
    finally:
        await caller.close()
    assert (await call(server_url, "GET", "/api/v1/rooms/lifecycle"))[0] == 404
    assert (await call(server_url, "DELETE", "/api/v1/rooms/lifecycle"))[0] == 404
    # Every error a client received is counted: the WebSocket's room_closed and the HTTP 409 and 404s.
    errors = await errors_counted(server_url)
    grew = {code: errors[code] - errors_before.get(code, 0) for code in errors if errors[code] != errors_before.get(code, 0)}
    assert grew == {"room_closed": 1, "room_exists": 1, "room_not_found": 2}, grew


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ('{"id": "bad id!"}', 422, "invalid_body"),
        ('{"agent": {"reply_policy": "sometimes"}}', 422, "invalid_body"),
        ('{"surprise": 1}', 422, "invalid_body"),
        ('{"agent": {"voice": "no-such-voice"}}', 422, "config_error"),
        ('{"agent": {"language": "de"}}', 422, "config_error"),  # tiny.en cannot transcribe German
        ("{not json", 400, "invalid_json"),
    ],
)
async def test_bad_room_requests_get_typed_errors(server_url, body, status, code):
    got, reply = await call(server_url, "POST", "/api/v1/rooms", data=body, headers={**ADMIN, "Content-Type": "application/json"})
    assert (got, reply["error"]["code"]) == (status, code), reply
    assert reply["error"]["message"]


async def test_unknown_api_route_and_method_are_json_errors(server_url):
    status, body = await call(server_url, "GET", "/api/v1/nothing-here")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await call(server_url, "PUT", "/api/v1/rooms")
    assert status == 405 and body["error"]["code"] == "method_not_allowed"


async def test_join_tokens_are_checked(parley_app):
    url = parley_app.url
    tokens = parley_app.app[STATE_KEY].tokens
    await call(url, "POST", "/api/v1/rooms", json={"id": "guarded", "agent": {"enabled": False}})
    await call(url, "POST", "/api/v1/rooms", json={"id": "guarded-2", "agent": {"enabled": False}})
    good, _ = tokens.mint("guarded", "mallory")
    expired, _ = tokens.mint("guarded", "mallory", ttl_s=-5)
    claims = jwt.decode(good, options={"verify_signature": False})
    forged = jwt.encode(claims, "not-the-server-secret-but-just-as-long-as-one", algorithm="HS256")
    unknown_room, _ = tokens.mint("no-such-room", "mallory")

    assert (await join_with(url, None))["code"] == "token_missing"
    assert (await join_with(url, expired))["code"] == "token_expired"
    assert (await join_with(url, forged))["code"] == "token_invalid"
    assert (await join_with(url, "not.a.jwt"))["code"] == "token_invalid"
    assert (await join_with(url, good, {"room": "guarded-2"}))["code"] == "token_wrong_room"
    assert (await join_with(url, unknown_room))["code"] == "room_not_found"
    assert (await join_with(url, None, {"token": good}))["type"] == "joined"  # token in the join message
    assert (await join_with(url, good))["type"] == "joined"


async def test_room_and_server_limits(settings, models):
    limited = settings.model_copy(update={"rooms": settings.rooms.model_copy(update={"max_rooms": 2})})
    runner, served = await serve_app(limited, models)  # dev mode: "default" is the first room
    try:
        url = served.url
        status, _ = await call(url, "POST", "/api/v1/rooms", json={"id": "solo", "max_participants": 1, "agent": {"enabled": False}})
        assert status == 201
        status, body = await call(url, "POST", "/api/v1/rooms", json={"id": "one-too-many"})
        assert status == 429 and body["error"]["code"] == "too_many_rooms"
        _, token = await call(url, "POST", "/api/v1/rooms/solo/tokens", json={"identity": "first"})
        first = ParleyClient(url, token=token["token"])
        await first.start()
        try:
            _, token = await call(url, "POST", "/api/v1/rooms/solo/tokens", json={"identity": "second"})
            refused = await join_with(url, token["token"])
            assert refused["type"] == "error" and refused["code"] == "room_full", refused
        finally:
            await first.close()
    finally:
        await runner.cleanup()


def _app_routes(app: web.Application) -> set[tuple[str, str]]:
    routes = set()
    for resource in app.router.resources():
        path = resource.canonical
        if isinstance(resource, web.StaticResource):
            path = f"{path}/{{path}}"
        for route in resource:
            if route.method != "HEAD":
                routes.add((route.method.lower(), path))
    return routes


async def test_openapi_document_matches_the_routes(parley_app):
    status, doc = await call(parley_app.url, "GET", "/api/v1/openapi.json", headers={})
    assert status == 200 and doc["openapi"].startswith("3.")
    documented = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert documented == _app_routes(parley_app.app)
    schemas = doc["components"]["schemas"]
    for path, item in doc["paths"].items():
        for operation in item.values():
            assert operation.get("summary"), path
            for response in operation["responses"].values():
                ref = response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
                if ref:
                    assert ref.rsplit("/", 1)[1] in schemas, ref


async def test_dev_token_route_exists_only_in_dev_mode(settings, models):
    closed = settings.model_copy(update={"auth": settings.auth.model_copy(update={"dev_mode": False})})
    runner, served = await serve_app(closed, models)
    try:
        status, body = await call(served.url, "POST", "/api/v1/dev/token", headers={}, json={})
        assert status == 404 and body["error"]["code"] == "not_found"
        assert (await call(served.url, "GET", "/api/v1/rooms"))[1]["rooms"] == []  # no default room either
        status, doc = await call(served.url, "GET", "/api/v1/openapi.json", headers={})
        assert "/api/v1/dev/token" not in doc["paths"]
        assert {(m, p) for p, item in doc["paths"].items() for m in item} == _app_routes(served.app)
    finally:
        await runner.cleanup()


async def test_api_docs_page_renders_every_operation_and_schema(parley_app):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{parley_app.url}/api/v1/docs") as response:
            assert response.status == 200 and response.content_type == "text/html"
            page = await response.text()
        async with http.get(f"{parley_app.url}/api/v1/openapi.json") as response:
            doc = await response.json()
    assert "<script" not in page and "http://" not in page.split("</h1>")[0]  # self-contained, nothing fetched
    for path, item in doc["paths"].items():
        for method in item:
            assert f'id="{method}-{path}"' in page, (method, path)
    for name in doc["components"]["schemas"]:
        assert f'id="schema-{name}"' in page, name
    assert "<code>identity</code> *" in page  # a required field of TokenRequest, marked as required


async def test_the_sdk_can_be_imported_from_another_origin(parley_app):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{parley_app.url}/web/parley.js", headers={"Origin": "https://app.example.org"}) as response:
            assert response.status == 200
            assert response.headers.get("Access-Control-Allow-Origin") == "*"
            assert "export async function connect" in await response.text()
        async with http.get(f"{parley_app.url}/api/v1/rooms", headers={"Origin": "https://app.example.org"}) as response:
            assert "Access-Control-Allow-Origin" not in response.headers  # the admin API stays server-to-server
