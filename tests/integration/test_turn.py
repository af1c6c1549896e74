"""TURN with a real coturn on loopback: credentials accepted and refused, and a relay-only call through it."""

import asyncio

import aiohttp
import numpy as np
import pytest
from aioice import stun

from parley.signaling.client import ParleyClient
from parley.turn.credentials import mint_credential
from tests.conftest import serve_app
from tests.support.coturn import SECRET, allocate, start_coturn, wait_relayed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def coturn(tmp_path_factory):
    server = await start_coturn(tmp_path_factory.mktemp("coturn"))
    yield server
    server.stop()


async def test_fresh_credential_allocates_a_relay(coturn):
    credential = mint_credential(SECRET, "alice", 600)
    host, port = await allocate(coturn.address, credential.username, credential.password)
    assert host == "127.0.0.1" and coturn.settings.min_port <= port <= coturn.settings.max_port


@pytest.mark.parametrize("case", ["expired", "other secret", "tampered username"])
async def test_bad_credentials_are_refused(coturn, case):
    credential = mint_credential(SECRET, "mallory", 600)
    username, password = credential.username, credential.password
    if case == "expired":
        stale = mint_credential(SECRET, "mallory", -10)
        username, password = stale.username, stale.password
    elif case == "other secret":
        password = mint_credential("another-secret-of-the-same-length-000", "mallory", 600).password
    else:
        username = username.replace("mallory", "admin")
    with pytest.raises(stun.TransactionFailed) as info:
        await allocate(coturn.address, username, password)
    assert "401" in str(info.value), info.value


@pytest.fixture(scope="module")
async def turn_app(settings, coturn):
    """A Parley echo server (no models) that hands out credentials for the test coturn."""
    turned = settings.model_copy(update={
        "turn": coturn.settings,
        "agent": settings.agent.model_copy(update={"mode": "echo"}),
    })
    runner, served = await serve_app(turned, None)
    yield served
    await runner.cleanup()


async def test_joined_and_rest_hand_out_turn_servers(turn_app, coturn):
    caller = ParleyClient(turn_app.url)
    await caller.start()
    try:
        joined = caller.of_type("joined")[0]
        [turn] = [s for s in joined["ice_servers"] if s.get("username")]
        assert turn["urls"] == [f"turn:127.0.0.1:{coturn.settings.port}?transport=udp",
                                f"turn:127.0.0.1:{coturn.settings.port}?transport=tcp"]
        expiry, identity = turn["username"].split(":", 1)
        assert identity == caller.of_type("joined")[0]["identity"] and int(expiry) > 0
        await allocate(coturn.address, turn["username"], turn["credential"])  # coturn takes what Parley minted
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{turn_app.url}/api/v1/ice-servers", headers={"Authorization": f"Bearer {caller.token}"}) as r:
                assert r.status == 200
                body = await r.json()
            assert body["ttl_s"] == 600 and any(s.get("credential") for s in body["ice_servers"])
            async with http.get(f"{turn_app.url}/api/v1/ice-servers") as r:
                assert r.status == 401 and (await r.json())["error"]["code"] == "token_missing"
    finally:
        await caller.close()


def _burst() -> np.ndarray:
    t = np.arange(9600) / 48_000
    return np.concatenate([np.zeros(4800), 0.3 * np.sin(2 * np.pi * 700 * t), np.zeros(24_000)]).astype(np.float32)


async def test_relay_only_call_goes_through_coturn(turn_app, coturn):
    caller = ParleyClient(turn_app.url, relay_only=True)
    await caller.start()
    identity = caller.of_type("joined")[0]["identity"]
    try:
        for _ in range(100):
            if caller.pc.connectionState == "connected":
                break
            await asyncio.sleep(0.05)
        assert caller.pc.connectionState == "connected"
        assert "typ host" not in caller.pc.localDescription.sdp  # relay candidates only
        assert caller.selected_candidate_types()[0] == "relay"
        await asyncio.sleep(0.5)
        trips = [await caller.echo_round_trip(_burst()) for _ in range(3)]
    finally:
        await caller.close()
    # Audio went up to the server and came back down, both ways through the relay.
    assert all(t is not None for t in trips), trips
    print(f"echo round trips through coturn: {[round(t * 1000) for t in trips]} ms")
    # coturn reports each relayed session's traffic when it ends.
    assert await asyncio.to_thread(wait_relayed, coturn.log, f":{identity}"), coturn.log()[-3000:]


async def test_server_side_can_use_turn_too(settings, coturn):
    """With turn.server_uses_turn the server's own peer connection also gathers a relay candidate."""
    turned = settings.model_copy(update={
        "turn": coturn.settings.model_copy(update={"server_uses_turn": True}),
        "agent": settings.agent.model_copy(update={"mode": "echo"}),
    })
    runner, served = await serve_app(turned, None)
    caller = ParleyClient(served.url, relay_only=True)
    try:
        await caller.start()
        answer = caller.of_type("answer")[0]["sdp"]
        assert "typ relay" in answer, answer
        for _ in range(100):
            if caller.pc.connectionState == "connected":
                break
            await asyncio.sleep(0.05)
        assert caller.pc.connectionState == "connected"
        assert await caller.echo_round_trip(_burst()) is not None
    finally:
        await caller.close()
        await runner.cleanup()
