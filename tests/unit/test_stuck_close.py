"""A peer connection whose close never finishes, and a microphone nobody reads, do not hold their caller forever."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest
from aiortc import RTCPeerConnection

from parley.core import peer
from parley.signaling import client


class StuckPeer:
    """Stands in for an RTCPeerConnection whose transports never report they stopped (aiortc #283)."""

    connectionState = "connected"

    def __init__(self) -> None:
        self.closes = 0

    async def close(self) -> None:
        self.closes += 1
        await asyncio.Event().wait()


async def test_a_stuck_close_is_left_behind_with_a_warning_and_not_waited_on_again(caplog: pytest.LogCaptureFixture) -> None:
    stuck = StuckPeer()
    with caplog.at_level(logging.WARNING, logger="parley.core.peer"):
        started = time.monotonic()
        assert await peer.close_peer(stuck, within_s=0.2) is False  # type: ignore[arg-type]
        assert time.monotonic() - started < 2.0
    assert "did not finish closing within 0.2 s" in caplog.text
    assert await peer.close_peer(stuck, within_s=10) is False  # type: ignore[arg-type]
    assert stuck.closes == 1  # not asked again: a second pc.close() would wait on the first forever


async def test_a_real_peer_connection_closes_within_the_bound() -> None:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio")
    await pc.setLocalDescription(await pc.createOffer())
    assert await peer.close_peer(pc) is True
    assert pc.connectionState == "closed"


async def test_a_clip_on_a_microphone_nobody_reads_fails_instead_of_waiting_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "MIC_STALL_S", 0.2)
    mic = client.QueueMicrophone()
    playback = mic.play(np.zeros(4800, np.float32))  # 0.1 s
    with pytest.raises(TimeoutError, match="microphone track was not read"):
        await asyncio.wait_for(playback.ended, 5)
    assert playback.started.done()


async def test_a_clip_on_a_read_microphone_is_not_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "MIC_STALL_S", 0.2)
    mic = client.QueueMicrophone()
    clip = np.full(9600, 0.5, np.float32)  # 0.2 s, loud
    playback = mic.play(clip)
    for _ in range(12):
        await mic.recv()
    assert await playback.ended > await playback.started
    await asyncio.sleep(0.5)  # past the stall deadline: the futures keep their times
    assert playback.ended.exception() is None
