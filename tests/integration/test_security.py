"""What a token holder (or anyone, in dev mode) can no longer do, against a real server on loopback:
extra m-lines, filling a room with one token, idle sockets, other people's names, dev routes."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from parley.signaling.client import ParleyAdmin, ParleyApiError, ParleyClient
from parley.signaling.state import STATE_KEY
from tests.conftest import TEST_API_KEY, serve_app

pytestmark = pytest.mark.slow


class Socket:
    """A bare signaling WebSocket, optionally from another loopback source address (127.0.0.2, …)."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session, self.ws = session, ws

    @classmethod
    async def open(cls, url: str, token: str = "", source: str = "127.0.0.1") -> "Socket":
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)))
        try:
            return cls(session, await session.ws_connect(f"{url}/ws?token={token}"))
        except BaseException:
            await session.close()
            raise

    async def send(self, payload: dict) -> None:
        await self.ws.send_json(payload)

    async def next(self, timeout: float = 10.0) -> dict:
        """The next message; ``{"type": "closed", "code": …}`` once the server closed the socket."""
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type == aiohttp.WSMsgType.TEXT:
            return msg.json()
        return {"type": "closed", "code": self.ws.close_code}

    async def ask(self, payload: dict) -> dict:
        await self.send(payload)
        return await self.next()

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


async def _room_and_token(url: str, identity: str = "u1", name: str | None = None, **room) -> tuple[str, str]:
    async with ParleyAdmin(url, TEST_API_KEY) as admin:
        created = await admin.create_room(agent={"enabled": False}, **room)
        return created["id"], (await admin.token(created["id"], identity, name=name))["token"]


def _room(app, room_id: str):
    return app.app[STATE_KEY].rooms.get(room_id)


async def _offer(*kinds: str) -> str:
    pc = RTCPeerConnection()
    for kind in kinds:
        pc.addTransceiver(kind)
    offer = await pc.createOffer()
    await pc.close()
    return offer.sdp


# ---- m-lines ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kinds", [("audio", "audio"), ("audio", "video"), ("audio",) * 40 + ("video",)])
async def test_first_offer_with_extra_m_lines_is_refused_and_creates_nothing(parley_app, kinds):
    room_id, token = await _room_and_token(parley_app.url)
    socket = await Socket.open(parley_app.url, token)
    try:
        joined = await socket.ask({"type": "join"})
        reply = await socket.ask({"type": "offer", "sdp": await _offer(*kinds)})
        assert reply["type"] == "error" and reply["code"] == "unsupported_media", reply
        participant = _room(parley_app, room_id).participants[joined["participant_id"]]
        assert participant.pc is None  # no peer connection, so no transceivers or decoder threads
        assert (await socket.ask({"type": "ping"}))["type"] == "pong"
        answer = await socket.ask({"type": "offer", "sdp": await _offer("audio")})  # a proper offer still works
        assert answer["type"] == "answer" and answer["sdp"].count("m=audio") == 1, answer
        assert len(participant.pc.getTransceivers()) == 1
    finally:
        await socket.close()


async def test_a_reoffer_that_adds_m_lines_is_refused_and_changes_nothing(parley_app):
    room_id, token = await _room_and_token(parley_app.url)
    caller = ParleyClient(parley_app.url, token=token)
    await caller.start()
    try:
        participant = _room(parley_app, room_id).participants[caller.participant_id]
        await asyncio.wait_for(participant.connected.wait(), 20)
        before = [(t.mid, t.kind, t.direction) for t in participant.pc.getTransceivers()]
        for kind in ("audio", "video"):
            caller.pc.addTransceiver(kind)
        reoffer = await caller.pc.createOffer()
        assert reoffer.sdp.count("m=") == 3
        since = len(caller.messages)
        await caller.ws.send_json({"type": "offer", "sdp": reoffer.sdp})
        error = await caller.wait_for(lambda m: m["type"] in ("error", "answer"), 10, since)
        assert error["type"] == "error" and error["code"] == "unsupported_media", error
        assert [(t.mid, t.kind, t.direction) for t in participant.pc.getTransceivers()] == before
        assert participant.pc.signalingState == "stable" and participant.pc.connectionState == "connected"
    finally:
        await caller.close()


# ---- one token, one participant ----------------------------------------------------------------


async def test_one_token_joined_many_times_is_one_participant(parley_app):
    room_id, token = await _room_and_token(parley_app.url, max_participants=2)
    sockets = [await Socket.open(parley_app.url, token) for _ in range(5)]
    try:
        ids = []
        for socket in sockets:
            joined = await socket.ask({"type": "join"})
            assert joined["type"] == "joined", joined
            ids.append(joined["participant_id"])
        room = _room(parley_app, room_id)
        assert list(room.participants) == [ids[-1]]  # the newest join holds the identity
        for older in sockets[:-1]:
            replaced = await older.next()
            while replaced["type"] == "participant.left":  # a replaced call sees nothing else first
                replaced = await older.next()
            assert replaced["type"] == "error" and replaced["code"] == "replaced", replaced
            assert (await older.next())["type"] == "closed"
        async with ParleyAdmin(parley_app.url, TEST_API_KEY) as admin:  # the room is not full: another person fits
            other = (await admin.token(room_id, "someone-else"))["token"]
        newcomer = await Socket.open(parley_app.url, other)
        assert (await newcomer.ask({"type": "join"}))["type"] == "joined"
        await newcomer.close()
    finally:
        for socket in sockets:
            await socket.close()


# ---- deadlines and caps ------------------------------------------------------------------------


@pytest.fixture
async def strict_app(settings):
    strict = settings.model_copy(update={
        "agent": settings.agent.model_copy(update={"mode": "echo"}),
        "http": settings.http.model_copy(update={
            "join_timeout_s": 1.0, "offer_timeout_s": 1.0, "connect_timeout_s": 2.0,
        }),
    })
    runner, served = await serve_app(strict, None)
    yield served
    await runner.cleanup()


async def test_sockets_that_never_join_offer_or_connect_are_dropped(strict_app):
    url = strict_app.url
    idle = await Socket.open(url)
    assert (await idle.next(5)) == {"type": "error", "code": "join_timeout", "message": "no join in 1 s", "retry_after_s": None}
    assert (await idle.next(5))["type"] == "closed"

    _, token = await _room_and_token(url)
    silent = await Socket.open(url, token)
    assert (await silent.ask({"type": "join"}))["type"] == "joined"
    assert strict_app.app[STATE_KEY].calls() == 1
    reply = await silent.next(5)
    assert reply["type"] == "error" and reply["code"] == "offer_timeout", reply
    assert (await silent.next(5))["type"] == "closed"

    _, token = await _room_and_token(url, identity="u2")
    stuck = await Socket.open(url, token)
    assert (await stuck.ask({"type": "join"}))["type"] == "joined"
    answer = await stuck.ask({"type": "offer", "sdp": await _offer("audio")})  # that peer connection is already closed
    assert answer["type"] == "answer"
    reply = await stuck.next(10)
    assert reply["type"] == "error" and reply["code"] == "ice_timeout", reply
    assert (await stuck.next(5))["type"] == "closed"
    state = strict_app.app[STATE_KEY]
    for _ in range(100):  # the call leaves its room first, then its peer connection closes, then the socket goes
        if state.calls() == 0 and not state.connections:
            break
        await asyncio.sleep(0.1)
    assert state.calls() == 0 and not state.connections
    for socket in (idle, silent, stuck):
        await socket.close()


@pytest.fixture
async def capped_app(settings):
    capped = settings.model_copy(update={
        "agent": settings.agent.model_copy(update={"mode": "echo"}),
        "http": settings.http.model_copy(update={"max_unjoined_sockets": 5, "max_unjoined_per_address": 3}),
    })
    runner, served = await serve_app(capped, None)
    yield served
    await runner.cleanup()


async def _refused(url: str, source: str) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as raised:
        await Socket.open(url, source=source)
    return raised.value.status


async def test_caps_on_sockets_that_have_not_joined(capped_app):
    url = capped_app.url
    _, token = await _room_and_token(url)
    opened = [await Socket.open(url, source="127.0.0.1") for _ in range(3)]
    try:
        assert await _refused(url, "127.0.0.1") == 429  # per address
        caller = await Socket.open(url, token, source="127.0.0.2")  # someone else still gets in and joins
        opened.append(caller)
        assert (await caller.ask({"type": "join"}))["type"] == "joined"
        opened += [await Socket.open(url, source="127.0.0.3") for _ in range(2)]  # 5 waiting in all
        assert await _refused(url, "127.0.0.4") == 429  # in all
        assert (await caller.ask({"type": "ping"}))["type"] == "pong"  # the joined caller is untouched
        await opened.pop(0).close()
        for _ in range(50):
            if len(capped_app.app[STATE_KEY].connections) == 5:
                break
            await asyncio.sleep(0.05)
        opened.append(await Socket.open(url, source="127.0.0.4"))  # room again once one has gone
    finally:
        for socket in opened:
            await socket.close()


# ---- names, dev mode ----------------------------------------------------------------------------


async def test_display_names_come_from_the_token(parley_app):
    url = parley_app.url
    room_id, bo_token = await _room_and_token(url, identity="bo", name="Bo")
    async with ParleyAdmin(url, TEST_API_KEY) as admin:
        ada_token = (await admin.token(room_id, "ada", name="Ada"))["token"]
        with pytest.raises(ParleyApiError) as refused:  # a name with a line break would forge log lines
            await admin.token(room_id, "eve", name="Eve\nINFO forged log line")
        assert refused.value.status == 422 and refused.value.code == "invalid_body"
    bo = await Socket.open(url, bo_token)
    ada = await Socket.open(url, ada_token)
    try:
        assert (await bo.ask({"type": "join", "name": "Parley"}))["type"] == "joined"
        joined = await ada.ask({"type": "join", "name": "Bo"})
        assert [p["name"] for p in joined["participants"]] == ["Bo"]  # Bo's own claim to "Parley" was ignored
        seen = await bo.next()
        assert seen["type"] == "participant.joined" and seen["participant"]["name"] == "Ada", seen
    finally:
        await bo.close()
        await ada.close()


async def test_dev_token_route_serves_only_dev_rooms(parley_app):
    url = parley_app.url
    room_id, _ = await _room_and_token(url)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/v1/dev/token", json={"room": room_id}) as response:
            assert response.status == 403 and (await response.json())["error"]["code"] == "not_a_dev_room"
        async with http.post(f"{url}/api/v1/dev/token", json={"room": "made-by-dev"}) as response:
            assert response.status == 201
        async with http.post(f"{url}/api/v1/dev/token", json={"name": "Parley"}) as response:  # the agent's name
            assert response.status == 422
        # A cross-site form or fetch can send text/plain without a CORS preflight; the API takes JSON only.
        async with http.post(f"{url}/api/v1/dev/token", data='{"room": "made-by-dev"}', headers={"Content-Type": "text/plain"}) as response:
            assert response.status == 415 and (await response.json())["error"]["code"] == "unsupported_media_type"


async def test_dev_mode_on_loopback_answers_loopback_host_names_only(parley_app):
    """A page on another site that rebinds its DNS name to 127.0.0.1 must not reach the dev routes."""
    port = parley_app.url.rsplit(":", 1)[1]
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{parley_app.url}/api/v1/dev/token", json={}, headers={"Host": f"rebound.example:{port}"}) as response:
            assert response.status == 421 and (await response.json())["error"]["code"] == "host_not_allowed"
        async with http.get(f"{parley_app.url}/healthz", headers={"Host": f"localhost:{port}"}) as response:
            assert response.status == 200


def test_parley_serve_refuses_dev_mode_on_a_public_address():
    run = subprocess.run(
        [sys.executable, "-m", "parley.server.cli", "serve", "--dev", "--host", "0.0.0.0", "--port", "9"],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 2, run
    assert "--dev-public" in run.stderr and "0.0.0.0" in run.stderr, run.stderr
