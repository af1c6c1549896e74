"""Test audio: speech generated with espeak-ng, and word error rate."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from parley.core.audio import read_wav, resample, write_wav
from parley.core.wer import word_error_rate, words

__all__ = ["have_espeak", "peak_correlation", "read_wav", "speak_to_wav", "word_error_rate", "words", "write_wav"]


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def speak_to_wav(text: str, path: Path, *, rate: int = 48_000, voice: str = "en-us", speed: int = 160) -> Path:
    """Synthesize ``text`` with espeak-ng and write it as 16-bit mono WAV at ``rate``."""
    raw = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
    samples, native = read_wav(raw)
    write_wav(path, resample(samples, native, rate), rate)
    raw.unlink()
    return path


def peak_correlation(reference: np.ndarray, recording: np.ndarray) -> float:
    """Peak normalized cross-correlation of ``reference`` against every later window of ``recording``.

    1.0 means the recording contains the reference exactly (at some delay, at any gain); unrelated
    speech or silence stays near 0. Computed with FFTs so minutes of audio take milliseconds.
    """
    ref = reference.astype(np.float64) - float(reference.mean())
    rec = recording.astype(np.float64)
    n = ref.size
    if rec.size < n:
        rec = np.concatenate([rec, np.zeros(n - rec.size)])
    size = 1 << int(np.ceil(np.log2(rec.size + n)))
    corr = np.fft.irfft(np.fft.rfft(rec, size) * np.conj(np.fft.rfft(ref, size)), size)[: rec.size - n + 1]
    energy = np.concatenate([[0.0], np.cumsum(rec * rec)])
    window = energy[n:] - energy[:-n]
    denom = np.sqrt(np.maximum(window, 1e-12)) * np.linalg.norm(ref)
    ncc = np.where(window > 1e-6 * n, corr / denom, 0.0)  # digital silence correlates with nothing
    return float(ncc.max()) if ncc.size else 0.0
