"""The TTS interface: text in, mono float32 samples out."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class TextToSpeech(Protocol):
    """A loaded TTS voice shared by all calls. ``synthesize`` blocks: call it from an executor."""

    name: str
    sample_rate: int
    # Optional ``slow = True`` (read through ``is_slow``): synthesizes on the cores the embedded LLM uses, at a
    # fraction of real time (Kokoro); the LLM then yields the cores while a reply's first words are synthesized
    # (``llm.yield_to_voice``), and a reply started in a pause still being decided is not voiced ahead.

    def synthesize(self, text: str) -> np.ndarray:
        """Return the speech for ``text`` (mono float32 at ``sample_rate``), edge silence trimmed."""
        ...


def is_slow(voice: TextToSpeech) -> bool:
    """Whether ``voice`` synthesizes slowly on the embedded LLM's cores (its optional ``slow`` flag)."""
    return bool(getattr(voice, "slow", False))


def trim_silence(
    samples: np.ndarray, sample_rate: int, *, threshold: float = 0.01, lead_ms: int = 10, tail_ms: int = 80
) -> np.ndarray:
    """Cut leading and trailing near-silence, keeping short margins so words are not clipped."""
    loud = np.flatnonzero(np.abs(samples) > threshold)
    if loud.size == 0:
        return samples[:0]
    start = max(0, loud[0] - lead_ms * sample_rate // 1000)
    end = min(samples.size, loud[-1] + 1 + tail_ms * sample_rate // 1000)
    return samples[start:end]


def apply_gain(samples: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale by ``gain_db`` and clip to [-1, 1]."""
    return np.clip(samples * (10.0 ** (gain_db / 20.0)), -1.0, 1.0).astype(np.float32)
