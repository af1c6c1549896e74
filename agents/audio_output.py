"""Where an agent's voice goes: the shape of the paced output the media plane hands the agent.

The server's ``PlayoutTrack`` (a WebRTC track fed 48 kHz PCM and played in real time) is one; the
agent only pushes samples, pauses, resumes, flushes and asks when a position has been heard.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import numpy as np


class PlayedPositions(Protocol):
    """Positions in samples: ``pushed`` ever queued, ``played`` ever taken out (played or flushed)."""

    pushed: int
    played: int

    def wait_played(self, position: int) -> asyncio.Future[float]:
        """A future with the monotonic time at which ``position`` was played or flushed."""
        ...


class AudioOutput(Protocol):
    """A paced 48 kHz mono output (see ``parley.server.playout.PlayoutTrack``)."""

    @property
    def buffer(self) -> PlayedPositions: ...

    def push(self, samples: np.ndarray) -> int:
        """Queue float samples at 48 kHz; returns the position after them."""
        ...

    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def flush(self) -> int: ...
