"""``PlayoutTrack``: the agent's outgoing audio as paced 20 ms frames at 48 kHz, silence when idle."""

from __future__ import annotations

import asyncio
import collections
import fractions
import time
from dataclasses import dataclass

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from parley.core.audio import WEBRTC_FRAME_SAMPLES, WEBRTC_RATE, float_to_int16

_TIME_BASE = fractions.Fraction(1, WEBRTC_RATE)
_FRAME_S = WEBRTC_FRAME_SAMPLES / WEBRTC_RATE
_RESYNC_S = 0.5  # if the sender falls this far behind, restart the clock rather than burst


@dataclass
class PlayoutStats:
    frames_sent: int = 0
    audio_frames_sent: int = 0
    late_frames: int = 0
    resyncs: int = 0

    def add(self, other: "PlayoutStats") -> None:
        """Add another track's counters to these."""
        for key, value in vars(other).items():
            setattr(self, key, getattr(self, key) + value)


class PlayoutBuffer:
    """A FIFO of 48 kHz int16 samples with positions, so callers can wait until a sample has been played."""

    def __init__(self, max_seconds: float = 120.0) -> None:
        self._chunks: collections.deque[np.ndarray] = collections.deque()
        self._offset = 0  # read offset into the first chunk
        self._max_samples = int(max_seconds * WEBRTC_RATE)
        self.pushed = 0  # samples ever queued (positions count from here)
        self.played = 0  # samples ever taken out (played or flushed)
        self._waiters: list[tuple[int, asyncio.Future[float]]] = []

    @property
    def buffered(self) -> int:
        return self.pushed - self.played

    def push(self, samples: np.ndarray) -> int:
        """Queue float32 or int16 mono samples at 48 kHz; return the position just after them."""
        pcm = samples if samples.dtype == np.int16 else float_to_int16(samples)
        if pcm.size == 0:
            return self.pushed
        if self.buffered + pcm.size > self._max_samples:
            raise OverflowError("playout buffer is full")
        self._chunks.append(pcm)
        self.pushed += pcm.size
        return self.pushed

    def pop(self, count: int) -> tuple[np.ndarray, int]:
        """Take up to ``count`` samples, padded with silence; also return how many were real audio."""
        out = np.zeros(count, np.int16)
        filled = 0
        while filled < count and self._chunks:
            head = self._chunks[0]
            take = min(count - filled, head.size - self._offset)
            out[filled : filled + take] = head[self._offset : self._offset + take]
            filled += take
            self._offset += take
            if self._offset >= head.size:
                self._chunks.popleft()
                self._offset = 0
        self.played += filled
        self._wake(time.monotonic())
        return out, filled

    def flush(self) -> int:
        """Drop everything queued; return how many samples were dropped."""
        dropped = self.buffered
        self._chunks.clear()
        self._offset = 0
        self.played = self.pushed
        self._wake(time.monotonic())
        return dropped

    def wait_played(self, position: int) -> asyncio.Future[float]:
        """Return a future resolved with the monotonic time when ``position`` has been played or flushed."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if self.played >= position:
            future.set_result(time.monotonic())
        else:
            self._waiters.append((position, future))
        return future

    def _wake(self, now: float) -> None:
        if not self._waiters:
            return
        pending = []
        for position, future in self._waiters:
            if future.done():
                continue
            if self.played >= position:
                future.set_result(now)
            else:
                pending.append((position, future))
        self._waiters = pending


class FrameClock:
    """A steady clock of fixed-length frames: ``tick`` waits until the next frame is due.

    Returns how late the frame is (s), or ``RESYNCED`` when the loop fell more than ``resync_s``
    behind and the clock restarted from now instead of rushing to catch up.
    """

    RESYNCED = float("inf")

    def __init__(self, frame_s: float, resync_s: float) -> None:
        self.frame_s, self._resync_s = frame_s, resync_s
        self._start: float | None = None
        self.frames = 0

    async def tick(self) -> float:
        now = time.monotonic()
        lateness = 0.0
        if self._start is None:
            self._start = now
        else:
            due = self._start + self.frames * self.frame_s
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > self._resync_s:
                self._start = now - self.frames * self.frame_s
                lateness = self.RESYNCED
            else:
                lateness = now - due
        self.frames += 1
        return lateness


class PlayoutTrack(MediaStreamTrack):
    """An audio track that sends whatever the agent queued, 20 ms at a time, on a steady clock."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.buffer = PlayoutBuffer()
        self.stats = PlayoutStats()
        self._clock = FrameClock(_FRAME_S, _RESYNC_S)
        self._pts = 0
        self.paused = False

    def pause(self) -> None:
        """Send silence from the next frame on, keeping the queued audio (the caller may just be saying "mhm")."""
        self.paused = True

    def resume(self) -> None:
        """Carry on from the sample where ``pause`` stopped."""
        self.paused = False

    def push(self, samples: np.ndarray) -> int:
        """Queue 48 kHz mono samples for playout; return the position after them."""
        return self.buffer.push(samples)

    def flush(self) -> int:
        """Stop playing at once (barge-in, hang-up): drop what is queued."""
        return self.buffer.flush()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        lateness = await self._clock.tick()
        if lateness == FrameClock.RESYNCED:
            self.stats.resyncs += 1
        elif lateness > _FRAME_S:
            self.stats.late_frames += 1
        if self.paused:
            pcm, real = np.zeros(WEBRTC_FRAME_SAMPLES, np.int16), 0
        else:
            pcm, real = self.buffer.pop(WEBRTC_FRAME_SAMPLES)
        self.stats.frames_sent += 1
        if real:
            self.stats.audio_frames_sent += 1
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = WEBRTC_RATE
        frame.pts = self._pts
        frame.time_base = _TIME_BASE
        self._pts += WEBRTC_FRAME_SAMPLES
        return frame

    def stop(self) -> None:
        self.buffer.flush()
        super().stop()
