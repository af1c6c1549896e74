"""The STT interface: one finished utterance of 16 kHz mono float32 in, text out."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class SpeechToText(Protocol):
    """A loaded STT model shared by all calls. ``transcribe`` blocks: call it from an executor."""

    name: str

    def transcribe(self, samples: np.ndarray, language: str | None = None, hotwords: str | None = None) -> str:
        """Return the text of one utterance (16 kHz mono float32); ``hotwords`` biases it towards names."""
        ...
