"""The examples in examples/ work against a real server: the backend snippet's tokens join a call, and
the Python bot joins a room, asks by voice and hears the agent answer."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from parley.signaling.client import ParleyAdmin, ParleyClient
from parley.core.net import free_loopback_port
from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))


async def test_backend_snippet_gives_each_visitor_a_room_of_their_own(server_url):
    from backend import build_app, delete_abandoned_rooms  # examples/backend.py

    app = build_app(server_url, TEST_API_KEY, "embed")
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_loopback_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/") as response:
                assert response.status == 200 and "/web/parley.js" in await response.text()
            grants = []
            for _ in range(2):
                async with http.post(f"http://127.0.0.1:{port}/token") as response:
                    assert response.status == 200, await response.text()
                    grants.append(await response.json())
        assert grants[0]["token"] != grants[1]["token"] and grants[0]["parley_url"] == server_url
        visitors = [ParleyClient(server_url, token=grant["token"]) for grant in grants]
        for visitor in visitors:
            await visitor.start()
        try:
            rooms = set()
            for visitor in visitors:
                joined = visitor.of_type("joined")[0]
                assert joined["room"].startswith("embed-") and joined["identity"].startswith("visitor-")
                assert [p["name"] for p in joined["participants"]] == ["Ava"]  # the agent only: no stranger
                rooms.add(joined["room"])
            assert len(rooms) == 2  # strangers never share a room
        finally:
            for visitor in visitors:
                await visitor.close()
        await asyncio.sleep(0.5)
        from backend import CONFIG

        await delete_abandoned_rooms(app[CONFIG], min_age_s=0)  # empty now: the backend cleans them up
        async with ParleyAdmin(server_url, TEST_API_KEY) as admin:
            assert not [r for r in await admin.rooms() if r["id"].startswith("embed-")]
    finally:
        await runner.cleanup()


async def test_python_bot_asks_and_hears_the_answer(server_url):
    async with ParleyAdmin(server_url, TEST_API_KEY) as admin:
        await admin.create_room("bots", agent={"reply_policy": "always"})
    try:
        bot = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLES / "bot.py"), "--url", server_url, "--api-key", TEST_API_KEY, "--room", "bots",
            "--say", "What is the capital of France?", "--timeout", "60",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(bot.communicate(), 120)
    finally:
        async with ParleyAdmin(server_url, TEST_API_KEY) as admin:
            await admin.delete_room("bots")
    text = out.decode()
    assert bot.returncode == 0, text + err.decode()[-2000:]
    assert "joined room bots as Bot" in text
    lines = text.splitlines()
    assert any(line.startswith("Parley: ") and len(line) > len("Parley: ") for line in lines), text  # the agent's reply
    assert "answer heard" in text


async def test_realtime_example_talks_through_the_official_sdk(server_url, tmp_path):
    out = tmp_path / "answer.wav"
    example = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / "realtime_client.py"), "--url", server_url, "--api-key", TEST_API_KEY,
        "--say", "What is the capital of France?", "--out", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(example.communicate(), 120)
    text = stdout.decode()
    assert example.returncode == 0, text + stderr.decode()[-2000:]
    assert "heard: " in text and "capital" in text.lower() and "answered: " in text, text
    assert out.stat().st_size > 24_000, text  # over half a second of the answer's voice
