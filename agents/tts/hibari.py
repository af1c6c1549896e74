"""hibari-tts: a tiny ONNX English voice (24 kHz), fast enough to synthesize a clause in ~20 ms on CPU."""

from __future__ import annotations

import numpy as np

from parley.agents.tts.base import apply_gain, trim_silence
from parley.core.errors import ModelLoadError


class HibariTts:
    """One loaded hibari voice; safe to call from several executor threads."""

    name = "hibari"

    def __init__(self, voice: str = "heart", *, threads: int = 1, gain_db: float = 6.0) -> None:
        try:
            from hibari import Hibari

            self._voice = Hibari(voice=voice, threads=threads)
        except Exception as exc:  # unknown voice → KeyError/ValueError; broken install → ImportError
            raise ModelLoadError(f"hibari-tts could not load voice {voice!r}: {exc!r}") from exc
        self.sample_rate = int(self._voice.sample_rate)
        self._gain_db = gain_db

    def synthesize(self, text: str) -> np.ndarray:
        samples = np.asarray(self._voice(text), dtype=np.float32).reshape(-1)
        # hibari pads every sentence with ~0.3 s before and ~0.45 s after: that is pure latency.
        return apply_gain(trim_silence(samples, self.sample_rate), self._gain_db)
