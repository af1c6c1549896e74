"""Receive-side jitter buffer depth for audio: aiortc holds 4 packets (80 ms) before decoding; the agent wants less."""

from __future__ import annotations

import aiortc.rtcrtpreceiver as rtcrtpreceiver
from aiortc.jitterbuffer import JitterBuffer


def use_audio_jitter_prefetch(packets: int) -> None:
    """Make every audio receiver of this process wait for ``packets`` packets (aiortc's default: 4).

    Each packet is 20 ms of the caller's speech arriving later at the VAD and STT, and at the
    barge-in detector. 1 still reorders adjacent packets; losses are concealed by Opus either way.
    """

    def make(capacity: int, prefetch: int = 0, is_video: bool = False) -> JitterBuffer:
        return JitterBuffer(capacity, prefetch=prefetch if is_video else packets, is_video=is_video)

    rtcrtpreceiver.JitterBuffer = make  # type: ignore[assignment,misc]
