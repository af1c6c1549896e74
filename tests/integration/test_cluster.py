"""Nodes sharing rooms through a real redis-server on loopback: placement, redirects, isolation, a Redis
outage, and a node killed with SIGKILL (its callers rejoin on the other node and the agent answers)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import numpy as np
import pytest

from parley.core.net import free_loopback_port, free_loopback_port_run
from parley.server.app import create_app
from parley.server.config import Settings
from parley.signaling.client import ParleyAdmin, ParleyApiError, ParleyClient
from parley.signaling.auth import TokenAuthority
from tests.conftest import QUESTION, QUESTION_MAX_WER, TEST_API_KEY
from tests.support.audio import peak_correlation, word_error_rate
from tests.support.redis import RedisServer

pytestmark = pytest.mark.slow
SECRET = "cluster-test-secret-0123456789abcdef"
HEARTBEAT_S, NODE_TTL_S = 0.25, 1.5
# A killed node's rooms are free after NODE_TTL_S; its callers' rejoin backoff adds up to 2 s a try.
FAILOVER_WITHIN_S = 12.0
SAME_AUDIO = 0.6  # forwarded speech correlates with its source at 0.9+ (tests/integration/test_rooms.py)


@pytest.fixture
def redis_server(tmp_path: Path):
    server = RedisServer(tmp_path / "redis.log").start()
    yield server
    server.stop()


def node_settings(settings: Settings, redis_url: str, node_id: str, port: int) -> Settings:
    return settings.model_copy(update={
        "http": settings.http.model_copy(update={"port": port}),
        "auth": settings.auth.model_copy(update={"token_secret": SECRET}),
        "cluster": settings.cluster.model_copy(update={
            "redis_url": redis_url, "node_id": node_id, "heartbeat_s": HEARTBEAT_S, "node_ttl_s": NODE_TTL_S,
        }),
    })


@asynccontextmanager
async def node(settings: Settings, models, redis_url: str, node_id: str) -> AsyncIterator[str]:
    """A Parley node in this process (the session's models), on its own loopback port; yields its URL."""
    from aiohttp import web

    port = free_loopback_port()
    app = create_app(node_settings(settings, redis_url, node_id, port), models)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def until(predicate, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def token(url: str, room: str, identity: str) -> dict:
    async with ParleyAdmin(url, TEST_API_KEY) as admin:
        return await admin.token(room, identity, name=identity.title())


def heard(caller: ParleyClient, source: ParleyClient) -> np.ndarray:
    recorder = caller.recorder_for(source.participant_id)
    assert recorder is not None, f"{caller.name} has no track from {source.name}"
    return recorder.samples()


def assert_answered(result) -> None:
    assert result.answered, result
    assert word_error_rate(QUESTION, result.user_text) <= QUESTION_MAX_WER, result.user_text


async def test_a_room_made_on_one_node_is_joined_through_another_and_people_there_hear_each_other(
    settings, models, redis_server, question_samples,
):
    async with node(settings, models, redis_server.url, "node-a") as a, node(settings, models, redis_server.url, "node-b") as b:
        async with ParleyAdmin(a, TEST_API_KEY) as admin_a, ParleyAdmin(b, TEST_API_KEY) as admin_b:
            # On the node with fewer calls, then rooms. With two people the agent would wait to be addressed.
            await admin_a.create_room("cl-shared", agent={"reply_policy": "always"})
            nodes = {n["id"]: n for n in await admin_b.nodes()}
            assert set(nodes) == {"node-a", "node-b"}, nodes
            minted = await admin_b.token("cl-shared", "ann", name="Ann")
            owner = next(n for n in nodes.values() if minted["ws_url"].startswith(n["ws_url"]))  # the token points at it
            other = next(n for n in nodes.values() if n is not owner)

            ann = ParleyClient(other["url"], token=minted["token"], name="Ann", keep_audio=True)  # enters elsewhere
            ben = ParleyClient(owner["url"], token=(await token(a, "cl-shared", "ben"))["token"], name="Ben", keep_audio=True)
            await ann.start()
            await ben.start()
            try:
                assert ann.node_url == ben.node_url == owner["ws_url"]  # redirected: media goes to the owner
                assert sum(1 for m in ann.messages if m["type"] == "redirect") == 1
                # Each hears the other once the server's renegotiation (after ICE connects) has added the m-line.
                await until(lambda: ann.participant_id in ben.tracks.values() and ben.participant_id in ann.tracks.values(),
                            15, "renegotiation did not finish")
                result = await ann.ask(question_samples)
                assert_answered(result)
                assert peak_correlation(question_samples, heard(ben, ann)) > SAME_AUDIO

                # Both nodes list the room with its people (the other one from the owner's heartbeat).
                async def people_seen_by_b() -> int:
                    room = await admin_b.room("cl-shared")
                    return sum(1 for p in room["participants"] if p["kind"] == "human")

                deadline = time.monotonic() + 3
                while await people_seen_by_b() != 2:
                    assert time.monotonic() < deadline, await admin_b.room("cl-shared")
                    await asyncio.sleep(0.1)
                assert {r["id"] for r in await admin_b.rooms()} >= {"cl-shared", "default"}

                # The owner holds two calls now: the next room goes to the other node, wherever it is asked for.
                await asyncio.sleep(HEARTBEAT_S * 3)
                await admin_a.create_room("cl-second")
                second = await admin_a.token("cl-second", "cat")
                assert second["ws_url"].startswith(other["ws_url"]), second
            finally:
                await ann.close()
                await ben.close()


async def test_tokens_and_rooms_stay_apart_on_every_node(settings, models, redis_server):
    async with node(settings, models, redis_server.url, "node-a") as a, node(settings, models, redis_server.url, "node-b") as b:
        async with ParleyAdmin(a, TEST_API_KEY) as admin:
            await admin.create_room("cl-x", agent={"enabled": False})
            await admin.create_room("cl-y", agent={"enabled": False})
            x_token = (await admin.token("cl-x", "xavier"))["token"]
            with pytest.raises(ParleyApiError) as taken:
                await admin.create_room("cl-x")
            assert taken.value.status == 409
        for url in (a, b):
            async with aiohttp.ClientSession() as session, session.ws_connect(url.replace("http", "ws") + f"/ws?token={x_token}") as ws:
                await ws.send_json({"type": "join", "room": "cl-y"})
                reply = await ws.receive_json(timeout=5)
                assert reply["type"] == "error" and reply["code"] == "token_wrong_room", reply
        # A token signed with another secret (another deployment's) is refused by every node.
        forged, _ = TokenAuthority("another-secret-0123456789abcdefghij", 60, 60).mint("cl-x", "mallory")
        for url in (a, b):
            stranger = ParleyClient(url, token=forged)
            with pytest.raises(RuntimeError, match="token_invalid"):
                await stranger.start()
            await stranger.close()


async def test_calls_go_on_while_redis_is_down_and_placement_resumes_when_it_is_back(
    settings, models, redis_server, question_samples,
):
    async with node(settings, models, redis_server.url, "node-a") as a, node(settings, models, redis_server.url, "node-b") as b:
        async with ParleyAdmin(a, TEST_API_KEY) as admin_a, ParleyAdmin(b, TEST_API_KEY) as admin_b:
            await admin_a.create_room("cl-outage")
            caller = ParleyClient(a, token=(await admin_a.token("cl-outage", "olga"))["token"])
            await caller.start()
            try:
                redis_server.stop()
                assert_answered(await caller.ask(question_samples))  # the call goes on without Redis
                with pytest.raises(ParleyApiError) as refused:
                    await admin_b.create_room("cl-new")
                assert refused.value.status == 503 and refused.value.code == "cluster_unavailable", refused.value
                async with aiohttp.ClientSession() as http, http.get(f"{b}/healthz") as health:
                    assert (await health.json())["status"] == "ok"  # the node itself is up

                redis_server.start()  # back, and empty: A tells it about its room again
                deadline = time.monotonic() + 5
                while True:
                    try:
                        await admin_b.create_room("cl-new")
                        break
                    except ParleyApiError as exc:
                        assert exc.code == "cluster_unavailable" and time.monotonic() < deadline, exc
                        await asyncio.sleep(0.2)
                deadline = time.monotonic() + 3
                while "cl-outage" not in {r["id"] for r in await admin_b.rooms()}:
                    assert time.monotonic() < deadline, await admin_b.rooms()
                    await asyncio.sleep(0.1)
                assert_answered(await caller.ask(question_samples))
            finally:
                await caller.close()


def _spawn_node(settings: Settings, redis_url: str, tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """A node in its own process (its own models and LLM child), as `parley serve --workers` starts them."""
    port = free_loopback_port()
    own = node_settings(settings, redis_url, "node-doomed", port)
    path = tmp_path / "node.json"
    path.write_text(own.model_dump_json())
    log = open(tmp_path / "node.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "parley.server.worker", str(path)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    return process, f"http://127.0.0.1:{port}"


async def test_callers_of_a_killed_node_are_back_in_one_room_on_another_and_the_agent_answers(
    settings, models, redis_server, question_samples, tmp_path,
):
    process, doomed = _spawn_node(settings, redis_server.url, tmp_path)
    try:
        async with node(settings, models, redis_server.url, "node-b") as b, aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 120
            while True:
                assert process.poll() is None, (tmp_path / "node.log").read_text()[-2000:]
                try:
                    async with http.get(f"{doomed}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "the node did not start"
                await asyncio.sleep(0.5)
            async with ParleyAdmin(doomed, TEST_API_KEY) as admin:
                await admin.create_room("cl-failover", agent={"reply_policy": "always"})
                tokens = [(await admin.token("cl-failover", who))["token"] for who in ("una", "vic")]
            callers = [ParleyClient(b, token=t, name=n, reconnect=True, keep_audio=True) for t, n in zip(tokens, ("Una", "Vic"))]
            for caller in callers:
                await caller.start()
            try:
                assert {c.node_url for c in callers} == {doomed.replace("http", "ws") + "/ws"}
                os.killpg(process.pid, signal.SIGKILL)  # the node and its LLM child, no goodbye
                killed = time.monotonic()
                await until(lambda: all(c.reconnects == 1 for c in callers), FAILOVER_WITHIN_S, "both callers rejoined")
                took = time.monotonic() - killed
                print(f"failover: both callers rejoined on node B {took:.1f} s after SIGKILL")
                for caller in callers:
                    assert caller.node_url == b.replace("http", "ws") + "/ws", caller.node_url
                async with ParleyAdmin(b, TEST_API_KEY) as admin:  # one room, both in it, on B now
                    people = [p["identity"] for p in (await admin.room("cl-failover"))["participants"] if p["kind"] == "human"]
                assert sorted(people) == ["una", "vic"], people
                una, vic = callers
                await until(lambda: una.participant_id in vic.tracks.values(), 15, "renegotiation did not finish")
                result = await una.ask(question_samples)
                assert_answered(result)
                assert peak_correlation(question_samples, heard(vic, una)) > SAME_AUDIO
            finally:
                for caller in callers:
                    await caller.close()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


async def _nodes(url: str) -> list[dict]:
    async with ParleyAdmin(url, TEST_API_KEY) as admin:
        return await admin.nodes()


async def test_workers_share_one_port_and_a_killed_worker_comes_back(tmp_path, question_samples):
    port = free_loopback_port_run(3)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "PARLEY_AGENT__MODE": "echo", "PARLEY_AUTH__API_KEY": TEST_API_KEY}
    log = open(tmp_path / "workers.log", "wb")
    parent = subprocess.Popen(
        [sys.executable, "-m", "parley.server.cli", "serve", "--workers", "2", "--port", str(port), "--ice-host-address", "127.0.0.1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    shared = f"http://127.0.0.1:{port}"
    callers: list[ParleyClient] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            assert parent.poll() is None, (tmp_path / "workers.log").read_text()[-2000:]
            try:
                nodes = await _nodes(shared)
                if len(nodes) == 2:
                    break
            except (aiohttp.ClientError, ParleyApiError):
                pass
            assert time.monotonic() < deadline, (tmp_path / "workers.log").read_text()[-2000:]
            await asyncio.sleep(0.3)
        assert sorted(n["url"] for n in nodes) == [f"http://127.0.0.1:{port + 1}", f"http://127.0.0.1:{port + 2}"]
        async with ParleyAdmin(shared, TEST_API_KEY) as admin:
            for room in ("w-one", "w-two"):
                await admin.create_room(room)
            tokens = [await admin.token(room, f"{room}-caller") for room in ("w-one", "w-two")]
        assert tokens[0]["ws_url"].split("/ws")[0] != tokens[1]["ws_url"].split("/ws")[0], tokens  # one room per worker
        for minted in tokens:
            caller = ParleyClient(shared, token=minted["token"], reconnect=True)
            await caller.start()
            callers.append(caller)
            assert await caller.echo_round_trip(question_samples[: 48_000]) is not None

        victim = next(n for n in nodes if tokens[0]["ws_url"].startswith(n["ws_url"]))
        os.kill(victim["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 60
        back: dict = {}
        while True:  # the parent starts the worker again, under the same node id
            try:  # a connection the kernel handed to the dying worker's socket is reset: ask again
                back = {n["id"]: n for n in await _nodes(shared)}
            except aiohttp.ClientError:
                pass
            if victim["id"] in back and back[victim["id"]]["pid"] != victim["pid"]:
                break
            assert time.monotonic() < deadline, back
            await asyncio.sleep(0.3)
        await until(lambda: callers[0].reconnects == 1, 30, "the killed worker's caller rejoined")
        assert await callers[0].echo_round_trip(question_samples[: 48_000]) is not None
        assert callers[1].reconnects == 0  # the other worker's call never noticed
        assert await callers[1].echo_round_trip(question_samples[: 48_000]) is not None
    finally:
        for caller in callers:
            await caller.close()
        parent.send_signal(signal.SIGTERM)
        try:
            assert parent.wait(30) == 0, (tmp_path / "workers.log").read_text()[-2000:]
        finally:
            if parent.poll() is None:
                os.killpg(parent.pid, signal.SIGKILL)
    assert "started a private redis-server" in (tmp_path / "workers.log").read_text()
