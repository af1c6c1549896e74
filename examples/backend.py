"""Your backend, in about 60 lines: it holds Parley's API key, creates a room and hands each visitor a
join token; it also serves the embed page (examples/embed/index.html) from its own origin.

    parley serve --config parley.toml          # with auth.api_key set and http.allowed_origins = ["http://127.0.0.1:8000"]
    python examples/backend.py --parley http://127.0.0.1:8080 --api-key "$PARLEY_API_KEY" --port 8000
    open http://127.0.0.1:8000

Only the REST calls matter here; any web framework or language does the same two POSTs.
"""

from __future__ import annotations

import argparse
import secrets
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
    room: str
    http: aiohttp.ClientSession | None = None


CONFIG = web.AppKey("config", Config)


async def parley_post(config: Config, path: str, body: dict) -> tuple[int, dict]:
    """One call to Parley's admin REST API with the API key (never sent to browsers)."""
    assert config.http is not None
    headers = {"Authorization": f"Bearer {config.api_key}"}
    async with config.http.post(f"{config.parley}/api/v1{path}", json=body, headers=headers) as response:
        return response.status, await response.json()


async def token(request: web.Request) -> web.Response:
    """POST /token: make sure the room exists, then mint a join token for this visitor."""
    config = request.app[CONFIG]
    status, room = await parley_post(config, "/rooms", {"id": config.room, "agent": {"name": "Ava", "reply_policy": "always"}})
    if status not in (201, 409):  # 409 room_exists: created by an earlier visitor
        return web.json_response(room, status=502)
    visitor = f"visitor-{secrets.token_hex(4)}"  # your app would use its own user id
    status, grant = await parley_post(config, f"/rooms/{config.room}/tokens", {"identity": visitor, "name": "Visitor", "ttl_s": 600})
    if status != 201:
        return web.json_response(grant, status=502)
    return web.json_response({"token": grant["token"], "parley_url": config.public_parley})


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE)


async def _session(app: web.Application):
    app[CONFIG].http = aiohttp.ClientSession()
    yield
    await app[CONFIG].http.close()


def build_app(parley: str, api_key: str, room: str, public_parley: str | None = None) -> web.Application:
    app = web.Application()
    app[CONFIG] = Config(parley.rstrip("/"), (public_parley or parley).rstrip("/"), api_key, room)
    app.cleanup_ctx.append(_session)
    app.router.add_get("/", page)
    app.router.add_post("/token", token)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parley", default="http://127.0.0.1:8080", help="Parley's address as this backend reaches it")
    parser.add_argument("--public-parley", help="Parley's address as browsers reach it (default: --parley)")
    parser.add_argument("--api-key", required=True, help="Parley's auth.api_key")
    parser.add_argument("--room", default="support", help="the room visitors join")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    web.run_app(build_app(args.parley, args.api_key, args.room, args.public_parley), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
