"""``BoundedAudioTrack``: a listener's view of a decoded track that never holds more than a few seconds.

aiortc hands decoded frames to an unbounded queue. If whoever reads them (the agent's VAD) falls
behind, that queue grows by ~200 KB a second per caller. This wrapper drains the track as frames
arrive into a bounded buffer; when the reader is further behind than the buffer, the oldest frames
are dropped (and counted) instead.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from parley.core.audio import stamp_arrival

log = logging.getLogger(__name__)
DEFAULT_MAX_FRAMES = 150  # 3 s of 20 ms frames


class BoundedAudioTrack(MediaStreamTrack):
    """Reads ``source`` continuously; ``recv`` returns its frames in order, at most ``max_frames`` behind."""

    kind = "audio"

    def __init__(self, source: MediaStreamTrack, max_frames: int = DEFAULT_MAX_FRAMES) -> None:
        super().__init__()
        self._source = source
        self._frames: collections.deque[av.AudioFrame] = collections.deque(maxlen=max_frames)
        self._arrived = asyncio.Event()
        self._source_ended = False
        self.dropped = 0
        self._pump = asyncio.create_task(self._drain(), name="bounded-audio")

    async def _drain(self) -> None:
        try:
            while True:
                frame = await self._source.recv()
                if len(self._frames) == self._frames.maxlen:
                    self.dropped += 1
                    if self.dropped == 1 or self.dropped % 500 == 0:
                        log.warning("the listener falls behind: %d frames of decoded audio dropped", self.dropped)
                stamp_arrival(frame, time.monotonic())  # the echo canceller aligns it with the agent's voice by this
                self._frames.append(frame)  # a full deque drops its oldest
                self._arrived.set()
        except MediaStreamError:
            pass
        except Exception:  # the source broke: for the reader, that is the end of the track
            log.exception("reading the decoded audio failed")
        finally:
            self._source_ended = True
            self._arrived.set()

    async def recv(self) -> av.AudioFrame:  # type: ignore[override]
        while not self._frames:
            if self._source_ended or self.readyState != "live":
                raise MediaStreamError
            self._arrived.clear()
            await self._arrived.wait()
        return self._frames.popleft()

    def stop(self) -> None:
        self._pump.cancel()
        self._frames.clear()
        self._arrived.set()
        super().stop()
