"""Property-based fuzzing of the WebSocket protocol and the REST API (hypothesis), on a real server.

The server runs on its own event loop in a thread so hypothesis can drive it from plain test
functions. Every message must get a typed answer (``error`` with a known code, ``pong`` or
``joined``), every REST call a 2xx or 4xx, and afterwards a normal call must still work.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import aiohttp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from parley.signaling.client import ParleyClient
from parley.core.errors import SignalingError
from parley.signaling.messages import Ping, parse_client_message
from parley.signaling.state import STATE_KEY
from tests.conftest import TEST_API_KEY, serve_app

pytestmark = pytest.mark.slow
BATCH = 50
EXAMPLES = 110  # × 50 messages × 2 phases (before and after join) = 11,000 WebSocket messages
KNOWN_CODES = {
    "invalid_json", "unknown_type", "invalid_message", "message_too_large", "token_missing", "token_expired",
    "token_invalid", "token_wrong_room", "room_not_found", "room_full", "not_joined", "already_joined",
    "out_of_order", "invalid_sdp", "no_audio", "invalid_candidate", "server_full", "unsupported_media",
    "unsupported_codec", "too_many_candidates",
}
SENT = {"ws": 0, "rest": 0}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
sdp_like = st.one_of(
    st.text(max_size=200),
    st.just("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"),
    st.builds(lambda junk: "v=0\r\nm=audio 9 RTP/AVP 0\r\n" + junk, st.text(max_size=100)),
    st.just("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"),
)
typed = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["join", "offer", "answer", "candidate", "ping"])}, optional={
        "sdp": sdp_like | json_values, "token": st.text(max_size=300) | json_values, "room": json_values,
        "name": json_values, "candidate": st.text(max_size=120) | json_values,
        "sdpMid": json_values, "sdpMLineIndex": json_values, "extra": json_values,
    }),
    st.builds(lambda t, d: {"type": t, **d}, st.text(max_size=20), st.dictionaries(st.text(max_size=8), json_values, max_size=3)),
)
raw_messages = st.one_of(
    typed.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=300),
    st.integers(1, 5000).map(lambda n: "[" * n + "]" * n),  # deep JSON
    st.integers(0, 3).map(lambda n: json.dumps({"type": "offer", "sdp": "x" * (300_000 + n)})),  # too large
    st.just('{"type": "candidate", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "7"}'),
)


class ServerThread:
    """A Parley app (echo mode, rate limit lifted) on a loop in a background thread."""

    def __init__(self, settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        fuzz_settings = settings.model_copy(update={
            "agent": settings.agent.model_copy(update={"mode": "echo"}),
            # Rate limit lifted; set-up deadlines far off, so a slow batch is judged on its answers only.
            "http": settings.http.model_copy(update={
                "ws_rate_per_s": 1e6, "ws_burst": 10**6, "join_timeout_s": 600, "offer_timeout_s": 600,
            }),
            "rooms": settings.rooms.model_copy(update={"max_rooms": 100_000}),
        })
        self.runner, self.served = self.run(serve_app(fuzz_settings, None))
        self.http: aiohttp.ClientSession = self.run(self._session())

    async def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(headers={"Authorization": f"Bearer {TEST_API_KEY}"})

    def run(self, coro, timeout: float = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def token(self, room: str = "fuzz") -> str:
        async with self.http.post(f"{self.served.url}/api/v1/dev/token", json={"room": room}) as response:
            return (await response.json())["token"]

    def close(self) -> None:
        self.run(self.http.close())
        self.run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def server(settings):
    thread = ServerThread(settings)
    yield thread
    thread.close()


async def _exchange(server: ServerThread, messages: list[str], joined: bool) -> list[dict]:
    token = await server.token()
    async with server.http.ws_connect(f"{server.served.url}/ws?token={token}", max_msg_size=0) as ws:
        if joined:
            await ws.send_json({"type": "join"})
            assert (await ws.receive_json(timeout=10))["type"] == "joined"
        replies = []
        for raw in messages:
            await ws.send_str(raw)
            await ws.send_json({"type": "ping"})  # everything before its pong answers `raw`
            SENT["ws"] += 1
            answers = []
            if _is_ping(raw):  # its own pong comes first, then the marker's
                answers.append(await ws.receive_json(timeout=10))
            while (reply := await ws.receive_json(timeout=10))["type"] != "pong":
                answers.append(reply)
            # One answer per message; only an accepted ICE candidate is (by design) not acknowledged.
            assert len(answers) == 1 or (not answers and _is_candidate(raw)), (raw[:200], answers)
            replies += answers
        return replies


def _is_ping(raw: str) -> bool:
    try:
        return isinstance(parse_client_message(raw), Ping)
    except SignalingError:
        return False


def _is_candidate(raw: str) -> bool:
    try:
        return json.loads(raw).get("type") == "candidate"
    except (ValueError, AttributeError, RecursionError):
        return False


def _check(replies: list[dict]) -> None:
    for reply in replies:
        assert reply["type"] in ("error", "joined", "pong"), reply
        if reply["type"] == "error":
            assert reply["code"] in KNOWN_CODES and reply["message"], reply


@hsettings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.lists(raw_messages, min_size=BATCH, max_size=BATCH))
def test_websocket_fuzz_before_join(server, messages):
    _check(server.run(_exchange(server, messages, joined=False)))


@hsettings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.lists(raw_messages, min_size=BATCH, max_size=BATCH))
def test_websocket_fuzz_after_join(server, messages):
    replies = server.run(_exchange(server, messages, joined=True))
    _check(replies)
    assert not any(r["type"] == "joined" for r in replies)  # a second join is always refused


rest_calls = st.tuples(
    st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH"]),
    st.one_of(
        st.sampled_from(["/api/v1/rooms", "/api/v1/rooms/fuzz", "/api/v1/rooms/fuzz/tokens", "/api/v1/dev/token",
                         "/api/v1/ice-servers", "/api/v1/openapi.json"]),
        st.text(alphabet="abcdefghij-_./%", max_size=30).map(lambda p: f"/api/v1/{p}"),
        st.text(alphabet="abc-_", min_size=1, max_size=70).map(lambda r: f"/api/v1/rooms/{r}/tokens"),
    ),
    st.one_of(json_values.map(json.dumps), st.text(max_size=200), typed.map(json.dumps)),
    st.booleans(),
)


async def _rest(server: ServerThread, calls) -> list[tuple[int, str, Any]]:
    out = []
    for method, path, body, with_key in calls:
        headers = {"Content-Type": "application/json"} | ({} if with_key else {"Authorization": "Bearer nope"})
        async with server.http.request(method, server.served.url + path, data=body, headers=headers) as response:
            SENT["rest"] += 1
            payload = await response.json() if response.content_type == "application/json" else None
            out.append((response.status, path, payload))
    return out


@hsettings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.lists(rest_calls, min_size=25, max_size=25))
def test_rest_fuzz(server, calls):
    for status, path, payload in server.run(_rest(server, calls)):
        assert status < 500, (status, path, payload)
        if status >= 400 and path.startswith("/api/"):
            assert payload and payload["error"]["code"], (status, path, payload)


def test_server_still_serves_a_call_after_the_fuzz(server):
    async def call() -> float | None:
        caller = ParleyClient(server.served.url, room="after-fuzz")
        await caller.start()
        try:
            await asyncio.sleep(0.5)
            burst = np.concatenate([np.zeros(4800), 0.3 * np.sin(np.arange(9600) / 48_000 * 2 * np.pi * 700), np.zeros(24_000)])
            return await caller.echo_round_trip(burst.astype(np.float32))
        finally:
            await caller.close()

    assert server.run(call()) is not None
    state = server.served.app[STATE_KEY]
    print(f"fuzzed: {SENT['ws']} WebSocket messages, {SENT['rest']} REST calls; rooms now {len(state.rooms.rooms)}")
    assert SENT["ws"] >= 10_000 or SENT["ws"] == 0  # 0 when this test runs alone
