"""``EndOfTurnModel``: does the caller's speech so far sound finished? (Smart Turn v3.2, audio in.)

Silence alone cannot tell "What is the capital of…" (a pause to think) from "What is the capital of
France?" (done). Smart Turn reads the last 8 s of speech — intonation, rhythm, the words' shape — and
gives the probability that the speaker has finished. The endpointer asks it after a short silence and
ends the turn at once when it says "finished", or waits up to a longer cap when it does not.

Input, as the model was trained: 16 kHz mono, the last 8 s (zero-padded at the front when shorter),
normalised to zero mean and unit variance, as Whisper's 80-bin log-mel features (80 × 800 frames).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from parley.core.errors import ModelLoadError

log = logging.getLogger(__name__)
SAMPLE_RATE = 16_000
WINDOW_SAMPLES = 8 * SAMPLE_RATE


class EndOfTurnModel:
    """Smart Turn v3.2 on onnxruntime; ``probability`` is blocking (run it off the event loop)."""

    name = "smart-turn-v3.2"

    def __init__(self, path: Path, threads: int = 1) -> None:
        import onnxruntime as ort
        from faster_whisper.feature_extractor import FeatureExtractor

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types on a corrupt file
            raise ModelLoadError(f"end-of-turn model {path} cannot be loaded: {type(exc).__name__}: {exc}") from exc
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or list(inputs[0].shape[1:]) != [80, 800]:
            raise ModelLoadError(f"end-of-turn model {path} does not take 80 × 800 log-mel features")
        self._input = inputs[0].name
        self._features = FeatureExtractor(feature_size=80, sampling_rate=SAMPLE_RATE, chunk_length=8)

    def features(self, samples: np.ndarray) -> np.ndarray:
        """80 × 800 log-mel features of the last 8 s of ``samples`` (16 kHz mono float)."""
        audio = np.asarray(samples, np.float32)[-WINDOW_SAMPLES:]
        if audio.size < WINDOW_SAMPLES:
            audio = np.concatenate([np.zeros(WINDOW_SAMPLES - audio.size, np.float32), audio])
        audio = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
        return self._features(audio.astype(np.float32), padding=0)[:, :800]

    def probability(self, samples: np.ndarray) -> float:
        """How likely the speaker has finished their turn, in [0, 1]."""
        batch = self.features(samples)[np.newaxis].astype(np.float32)
        (out,) = self._session.run(None, {self._input: batch})
        return float(np.asarray(out).reshape(-1)[0])
