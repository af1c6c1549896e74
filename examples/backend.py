"""Your backend, in about 80 lines: it holds Parley's API key and gives each visitor a room of their own
(strangers never hear each other) and a join token for it; it also serves the embed page
(examples/embed/index.html) from its own origin, and deletes its rooms once their visitor has gone.

    parley serve --config parley.toml          # with auth.api_key set and http.allowed_origins = ["http://127.0.0.1:8000"]
    python examples/backend.py --parley http://127.0.0.1:8080 --api-key "$PARLEY_API_KEY" --port 8000
    open http://127.0.0.1:8000

Only the REST calls matter here; any web framework or language does the same two POSTs.
"""

from __future__ import annotations

import argparse
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

PAGE = Path(__file__).parent / "embed" / "index.html"


@dataclass
class Config:
    parley: str  # Parley as this backend reaches it
    public_parley: str  # Parley as browsers reach it
    api_key: str
    room_prefix: str  # this backend's rooms: "<prefix>-<random>", one per visitor
    http: aiohttp.ClientSession | None = None


CONFIG = web.AppKey("config", Config)


async def parley_api(config: Config, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """One call to Parley's admin REST API with the API key (never sent to browsers)."""
    assert config.http is not None
    headers = {"Authorization": f"Bearer {config.api_key}"}
    async with config.http.request(method, f"{config.parley}/api/v1{path}", json=body, headers=headers) as response:
        return response.status, (await response.json() if response.status != 204 else {})


async def delete_abandoned_rooms(config: Config, min_age_s: float = 120) -> None:
    """Rooms of ours that nobody is in any more (and that are old enough to have been joined) go."""
    status, listing = await parley_api(config, "GET", "/rooms")
    for room in listing.get("rooms", []) if status == 200 else []:
        if room["id"].startswith(f"{config.room_prefix}-") and not room["participants"] and time.time() - room["created_at"] > min_age_s:
            await parley_api(config, "DELETE", f"/rooms/{room['id']}")


async def token(request: web.Request) -> web.Response:
    """POST /token: a room for this visitor alone, and a join token for it."""
    config = request.app[CONFIG]
    await delete_abandoned_rooms(config)
    room_id = f"{config.room_prefix}-{secrets.token_hex(6)}"
    status, room = await parley_api(config, "POST", "/rooms", {"id": room_id, "agent": {"name": "Ava", "reply_policy": "always"}})
    if status != 201:
        return web.json_response(room, status=502)
    visitor = f"visitor-{secrets.token_hex(4)}"  # your app would use its own user id
    status, grant = await parley_api(config, "POST", f"/rooms/{room_id}/tokens", {"identity": visitor, "name": "Visitor", "ttl_s": 600})
    if status != 201:
        return web.json_response(grant, status=502)
    return web.json_response({"token": grant["token"], "parley_url": config.public_parley})


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE)


async def _session(app: web.Application):
    app[CONFIG].http = aiohttp.ClientSession()
    yield
    await app[CONFIG].http.close()


def build_app(parley: str, api_key: str, room_prefix: str, public_parley: str | None = None) -> web.Application:
    app = web.Application()
    app[CONFIG] = Config(parley.rstrip("/"), (public_parley or parley).rstrip("/"), api_key, room_prefix)
    app.cleanup_ctx.append(_session)
    app.router.add_get("/", page)
    app.router.add_post("/token", token)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parley", default="http://127.0.0.1:8080", help="Parley's address as this backend reaches it")
    parser.add_argument("--public-parley", help="Parley's address as browsers reach it (default: --parley)")
    parser.add_argument("--api-key", required=True, help="Parley's auth.api_key")
    parser.add_argument("--room-prefix", default="support", help="visitors' rooms are named <prefix>-<random>")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    web.run_app(build_app(args.parley, args.api_key, args.room_prefix, args.public_parley), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
