"""The VAD interface: speech probability per fixed window of 16 kHz mono audio."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class VadStream(Protocol):
    """One caller's VAD state."""

    window_samples: int

    def probabilities(self, samples: np.ndarray) -> list[float]:
        """Return one speech probability per whole window in ``samples`` (length a multiple of the window)."""
        ...

    def reset(self) -> None:
        """Forget the recurrent state."""
        ...


class Vad(Protocol):
    """A loaded VAD model shared by all calls; each call opens its own stream."""

    name: str

    def open_stream(self) -> VadStream:
        """Create per-call state."""
        ...
