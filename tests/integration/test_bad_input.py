"""Bad input gets a typed error, the socket and the server go on, and other calls are unaffected."""

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from parley.signaling.client import ParleyClient

pytestmark = pytest.mark.slow


class RawClient:
    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session, self.ws = session, ws

    @classmethod
    async def open(cls, url: str, room: str = "raw") -> "RawClient":
        session = aiohttp.ClientSession()
        async with session.post(f"{url}/api/v1/dev/token", json={"room": room}) as response:
            token = (await response.json())["token"]
        return cls(session, await session.ws_connect(f"{url}/ws?token={token}"))

    async def ask(self, payload, *, binary: bool = False) -> dict:
        if binary:
            await self.ws.send_bytes(payload)
        elif isinstance(payload, str):
            await self.ws.send_str(payload)
        else:
            await self.ws.send_json(payload)
        return await asyncio.wait_for(self.ws.receive_json(), 15)

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


@pytest.fixture
async def raw(server_url):
    client = await RawClient.open(server_url)
    yield client
    await client.close()


async def _error_then_still_alive(client: RawClient, payload, code: str, **kw) -> None:
    reply = await client.ask(payload, **kw)
    assert reply["type"] == "error" and reply["code"] == code, reply
    assert reply["message"]
    assert (await client.ask({"type": "ping"}))["type"] == "pong"  # the socket goes on


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ("{this is not json", "invalid_json"),
        ({"type": "teleport"}, "unknown_type"),
        ({"type": "offer"}, "invalid_message"),
        ({"type": "join", "room": 5}, "invalid_message"),
        ({"type": "offer", "sdp": "v=0\r\n"}, "not_joined"),
        ({"type": "candidate", "candidate": ""}, "not_joined"),
    ],
)
async def test_malformed_and_out_of_order_messages(raw, payload, code):
    await _error_then_still_alive(raw, payload, code)


async def test_binary_frame_is_refused(raw):
    await _error_then_still_alive(raw, b"\x00\x01", "invalid_message", binary=True)


async def test_bad_sdp_and_candidates_after_join(raw):
    assert (await raw.ask({"type": "join"}))["type"] == "joined"
    await _error_then_still_alive(raw, {"type": "join"}, "already_joined")
    await _error_then_still_alive(raw, {"type": "candidate", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}, "out_of_order")
    await _error_then_still_alive(raw, {"type": "offer", "sdp": "hello, I am not SDP"}, "invalid_sdp")
    await _error_then_still_alive(  # Opus, but no ICE credentials or DTLS fingerprint: aiortc refuses it
        raw, {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=audio 9 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n"},
        "invalid_sdp",
    )
    await _error_then_still_alive(  # G.711 only: its bytes would be forwarded into others' Opus streams
        raw, {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=audio 9 RTP/AVP 0\r\n"}, "unsupported_codec"
    )
    pc = RTCPeerConnection()
    pc.createDataChannel("chat")
    await pc.setLocalDescription(await pc.createOffer())
    await _error_then_still_alive(raw, {"type": "offer", "sdp": pc.localDescription.sdp}, "no_audio")
    await pc.close()


async def test_client_vanishing_mid_answer_does_not_hurt_other_calls(server_url, question_samples):
    vanisher = ParleyClient(server_url)
    await vanisher.start()
    vanisher.mic.play(question_samples)
    await vanisher.wait_for(lambda m: m["type"] == "agent.state" and m["state"] == "thinking", 30)
    await vanisher.vanish()  # gone without a "leave"

    async with aiohttp.ClientSession() as http:
        for _ in range(50):
            health = await (await http.get(f"{server_url}/healthz")).json()
            if health["calls"] == 0:
                break
            await asyncio.sleep(0.1)
    assert health["calls"] == 0, "the vanished call was not cleaned up"

    survivor = ParleyClient(server_url)
    await survivor.start()
    try:
        result = await survivor.ask(question_samples, timeout=60)
    finally:
        await survivor.close()
    assert result.answered and not survivor.of_type("error")


def _serve(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "parley.server.cli", "serve", "--port", "0", *args],
        capture_output=True, text=True, timeout=timeout, env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )


def test_missing_llm_stops_serve_with_a_clear_message():
    result = _serve("--llm-model", "/nonexistent/model.gguf")
    assert result.returncode == 3
    assert "LLM" in result.stderr and "/nonexistent/model.gguf" in result.stderr


def test_corrupt_llm_file_stops_serve_with_a_clear_message(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 4096)
    result = _serve("--llm-model", str(bad))
    assert result.returncode == 3
    assert "LLM" in result.stderr and "could not load" in result.stderr


def test_missing_stt_model_stops_serve_with_a_clear_message(tmp_path):
    result = _serve("--stt-model", str(tmp_path), "--llm-model", "smollm2-135m")
    assert result.returncode == 3
    assert "STT" in result.stderr and str(tmp_path) in result.stderr


def test_corrupt_end_of_turn_model_stops_serve_naming_the_file(tmp_path):
    bad = tmp_path / "smart-turn.onnx"
    bad.write_bytes(b"\x08\x07" + b"\x00" * 4096)
    result = subprocess.run(
        [sys.executable, "-m", "parley.server.cli", "serve", "--port", "0"], capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "PARLEY_VAD__TURN_MODEL": str(bad)},
    )
    assert result.returncode == 3, result.stderr[-2000:]
    assert "end-of-turn model" in result.stderr and str(bad) in result.stderr, result.stderr[-2000:]
