"""``EchoSession``: send the caller's audio straight back — the transport floor under every agent turn."""

from __future__ import annotations

import logging

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from parley.core.audio import WEBRTC_RATE
from parley.core.logs import CallLogger
from parley.server.playout import PlayoutTrack

log = logging.getLogger(__name__)


class EchoSession:
    """Decodes the caller's frames and queues them unchanged (48 kHz mono) on the outgoing track."""

    def __init__(self, playout: PlayoutTrack, participant_id: str) -> None:
        self._playout = playout
        self._log = CallLogger(log, participant=participant_id)

    async def listen(self, track: MediaStreamTrack, speaker: object = None, canceller: object = None) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=WEBRTC_RATE)
        try:
            while True:
                for out in resampler.resample(await track.recv()):
                    self._playout.push(out.to_ndarray().reshape(-1).astype(np.int16))
        except MediaStreamError:
            self._log.info("caller's audio track ended")

    async def close(self) -> None:
        self._playout.flush()
