"""Audio of a Realtime session carried in events: appended pcm16 in, the agent's voice out as deltas."""

from __future__ import annotations

import base64
import binascii
from collections import deque

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from parley.core.audio import WEBRTC_RATE, Resampler, float_to_int16, int16_to_float
from parley.server.playout import FrameClock
from parley.signaling import realtime_protocol as rp

FRAME_MS = 20
FRAME_SAMPLES = rp.AUDIO_RATE * FRAME_MS // 1000
MAX_INPUT_S = 60  # audio appended ahead of real time beyond this is refused (input_audio_buffer_full)


class PcmInput(MediaStreamTrack):
    """The client's appended audio as a live microphone: 20 ms frames at 24 kHz on a steady clock,
    silence when nothing is queued — the agent's endpointing sees it as it would a WebRTC track."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._chunks: deque[np.ndarray] = deque()
        self._queued = 0
        self._clock = FrameClock(FRAME_MS / 1000, resync_s=1.0)
        self.delivered_ms = 0  # audio handed to the listener so far (speech_started's audio_start_ms)

    def append(self, pcm: np.ndarray) -> None:
        if self._queued + pcm.size > MAX_INPUT_S * rp.AUDIO_RATE:
            raise rp.RealtimeProtocolError(
                "input_audio_buffer_full", f"more than {MAX_INPUT_S} s of audio is waiting to be heard: send it in real time",
            )
        self._chunks.append(pcm)
        self._queued += pcm.size

    def clear(self) -> None:
        self._chunks.clear()
        self._queued = 0

    def _take(self, count: int) -> np.ndarray:
        out = np.zeros(count, np.int16)
        filled = 0
        while filled < count and self._chunks:
            chunk = self._chunks[0]
            n = min(count - filled, chunk.size)
            out[filled : filled + n] = chunk[:n]
            filled += n
            if n == chunk.size:
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[n:]
        self._queued -= filled
        return out

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._clock.tick()  # a loop that stalled over a second restarts the clock instead of rushing
        pcm = self._take(FRAME_SAMPLES)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rp.AUDIO_RATE
        frame.pts = (self._clock.frames - 1) * FRAME_SAMPLES
        self.delivered_ms += FRAME_MS
        return frame


def decode_audio(data: str) -> np.ndarray:
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise rp.RealtimeProtocolError("invalid_value", "audio is not valid base64", param="audio") from exc
    if len(raw) % 2:
        raise rp.RealtimeProtocolError("invalid_value", "pcm16 audio has an even number of bytes", param="audio")
    return np.frombuffer(raw, "<i2").astype(np.int16)


class VoiceOut:
    """48 kHz int16 playout frames gathered and turned into 24 kHz pcm16 bytes (one resampler for the stream)."""

    def __init__(self) -> None:
        self._frames: list[np.ndarray] = []
        self._resampler = Resampler(WEBRTC_RATE, rp.AUDIO_RATE)

    @property
    def ms(self) -> int:
        return sum(f.size for f in self._frames) * 1000 // WEBRTC_RATE

    def add(self, pcm: np.ndarray) -> None:
        self._frames.append(pcm)

    def take(self) -> bytes | None:
        if not self._frames:
            return None
        samples = int16_to_float(np.concatenate(self._frames))
        self._frames = []
        return float_to_int16(self._resampler.process(samples)).astype("<i2").tobytes()
