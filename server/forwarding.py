"""SFU forwarding: a participant's Opus packets go to every subscriber as they arrive, never re-encoded.

aiortc decodes every received audio packet in a thread of its receiver. ``EncodedAudioTap`` puts
itself between the receiver's jitter buffer and that decoder: each encoded frame is offered to an
``AudioPublisher`` (fan-out to ``ForwardingSlot`` tracks, which aiortc's senders pack as they are),
and reaches the decoder only while someone (the agent) listens to the decoded audio.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import queue
import time
from typing import Any

import av
from aiortc import RTCRtpReceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from parley.core.aiortc_hooks import tap_decoder_queue

log = logging.getLogger(__name__)
OPUS_TIME_BASE = fractions.Fraction(1, 48_000)
OPUS_FRAME = 960  # 20 ms at 48 kHz
SUBSCRIBER_QUEUE_PACKETS = 25  # 0.5 s: a subscriber further behind than this loses its oldest packets


class ForwardingSlot(MediaStreamTrack):
    """One outgoing audio m-line of a subscriber: carries the Opus packets of whichever source is attached.

    The slot outlives its sources. When a participant leaves, the slot is detached (silent) and
    can be attached to the next one without a new m-line; RTP timestamps stay continuous.
    """

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.source: AudioPublisher | None = None
        self._queue: asyncio.Queue[av.Packet] = asyncio.Queue()
        self._offset: int | None = None  # output timestamp = input timestamp + offset
        self._last_out = -OPUS_FRAME
        self._last_out_at = time.monotonic()
        self.dropped = 0

    @property
    def source_id(self) -> str | None:
        return self.source.source_id if self.source else None

    def attach(self, publisher: AudioPublisher) -> None:
        self.detach()
        self.source = publisher
        self._offset = None
        publisher.subscribers.add(self)

    def detach(self) -> None:
        if self.source is not None:
            self.source.subscribers.discard(self)
            self.source = None
        while not self._queue.empty():
            self._queue.get_nowait()

    def put(self, payload: bytes, timestamp: int) -> None:
        now = time.monotonic()
        if self._offset is None:  # a new source: continue our timeline where the last one stopped
            gap = max(OPUS_FRAME, round((now - self._last_out_at) * 48_000))
            self._offset = self._last_out + gap - timestamp
        out = (timestamp + self._offset) & 0xFFFFFFFF
        self._last_out, self._last_out_at = out, now
        if self._queue.qsize() >= SUBSCRIBER_QUEUE_PACKETS:
            self._queue.get_nowait()
            self.dropped += 1
        packet = av.Packet(payload)
        packet.pts = out
        packet.time_base = OPUS_TIME_BASE
        self._queue.put_nowait(packet)

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        return await self._queue.get()

    def stop(self) -> None:
        self.detach()
        super().stop()


class AudioPublisher:
    """One source of Opus packets (a person's microphone, the agent's voice) and the slots it feeds."""

    def __init__(self, source_id: str) -> None:
        self.source_id = source_id
        self.subscribers: set[ForwardingSlot] = set()
        self.packets = 0

    def publish(self, payload: bytes, timestamp: int) -> None:
        """Hand one Opus packet (``timestamp`` in 48 kHz samples) to every attached slot."""
        self.packets += 1
        for slot in self.subscribers:
            slot.put(payload, timestamp)

    def close(self) -> None:
        for slot in list(self.subscribers):
            slot.detach()


class _TappedDecoderQueue(queue.Queue):  # type: ignore[type-arg]
    """Stands in for the receiver's decoder queue: publishes each encoded frame, decodes on demand."""

    def __init__(self, publisher: AudioPublisher) -> None:
        super().__init__()
        self.publisher = publisher
        self.decode = False

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:  # the receiver stops: always let the decoder thread see it
            super().put(item, block, timeout)
            return
        codec, frame = item
        if str(getattr(codec, "mimeType", "")).lower() != "audio/opus":
            return  # forwarding carries Opus only: other codecs' bytes would corrupt the others' streams
        self.publisher.publish(frame.data, frame.timestamp)
        if self.decode:
            super().put(item, block, timeout)


class EncodedAudioTap:
    """Forward a receiver's Opus frames to a publisher; decode them only while ``decode`` is on."""

    def __init__(self, receiver: RTCRtpReceiver, publisher: AudioPublisher) -> None:
        self._queue = _TappedDecoderQueue(publisher)
        tap_decoder_queue(receiver, self._queue)

    @property
    def decode(self) -> bool:
        return self._queue.decode

    @decode.setter
    def decode(self, value: bool) -> None:
        self._queue.decode = value
