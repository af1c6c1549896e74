"""Audio format conversions at the edges: WebRTC frames (48 kHz) <-> agent PCM (16 kHz mono float32)."""

from __future__ import annotations

import fractions
import os
import wave

import av
import numpy as np

WEBRTC_RATE = 48_000
AGENT_RATE = 16_000
FRAME_MS = 20
WEBRTC_FRAME_SAMPLES = WEBRTC_RATE * FRAME_MS // 1000  # 960


def float_to_int16(samples: np.ndarray) -> np.ndarray:
    """Convert float samples in [-1, 1] to int16 with clipping."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


def int16_to_float(samples: np.ndarray) -> np.ndarray:
    """Convert int16 samples to float32 in [-1, 1]."""
    return samples.astype(np.float32) / 32768.0


def dbfs(samples: np.ndarray) -> float:
    """Return the RMS level of float samples in dBFS (-120 for digital silence)."""
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples.astype(np.float64)))))
    return 20.0 * np.log10(rms) if rms > 1e-6 else -120.0


def stamp_arrival(frame: av.AudioFrame, at: float) -> None:
    """Note on ``frame`` when it arrived (monotonic): whoever reads it later can tell how late they are."""
    frame.opaque = at


def arrival_of(frame: av.AudioFrame) -> float | None:
    """When ``frame`` arrived (``stamp_arrival``), or None if nobody noted it."""
    return frame.opaque if isinstance(frame.opaque, float) else None


def join_speech(first: np.ndarray, second: np.ndarray, rate: int, gap_s: float = 0.3) -> np.ndarray:
    """``first`` and ``second`` as one clip with ``gap_s`` of silence between their speech: the quiet each
    part has at the join (an endpointer's trailing silence, a VAD's lead-in) is cut first, down to 50 ms.
    Whisper tiny.en heard "How long does it take" and "to boil an egg?" whole with 0.3 s between them, and
    wrote only the first with the 0.78 s the parts brought with them."""
    keep = int(0.05 * rate)
    first_end, second_start = _speech_bounds(first, rate)[1], _speech_bounds(second, rate)[0]
    head, tail = first[: first_end + keep], second[max(0, second_start - keep):]
    quiet_kept = (head.size - first_end) + (tail.size - (second.size - second_start))
    gap = np.zeros(max(0, int(gap_s * rate) - quiet_kept), np.float32)
    return np.concatenate([head, gap, tail]).astype(np.float32)


def frame_rms(samples: np.ndarray, frame: int) -> np.ndarray:
    """RMS of each whole ``frame``-sample frame of ``samples`` (a partial last frame is left out)."""
    frames = samples[: samples.size - samples.size % frame].reshape(-1, frame)
    return np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1)) if frames.size else np.zeros(0)


def _speech_bounds(samples: np.ndarray, rate: int, quiet: float = 0.1) -> tuple[int, int]:
    """Where the sound of ``samples`` starts and ends: the first and last 20 ms frame louder (RMS) than
    ``quiet`` times its loudest frame; all of it when it has no such frame."""
    frame = rate // 50
    rms = frame_rms(samples, frame)
    if rms.size == 0:
        return 0, samples.size
    loud = np.flatnonzero(rms > max(quiet * float(rms.max()), 1e-4))
    if loud.size == 0:
        return 0, samples.size
    return int(loud[0]) * frame, min(samples.size, (int(loud[-1]) + 1) * frame)


class Resampler:
    """Stateful mono resampler between two rates (wraps ``av.AudioResampler``; keeps filter state across calls)."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=out_rate)
        self._pts = 0

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Resample float32 mono samples; returns float32 mono at ``out_rate``."""
        if samples.size == 0:
            return np.zeros(0, np.float32)
        frame = av.AudioFrame.from_ndarray(float_to_int16(samples).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.in_rate
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self.in_rate)
        self._pts += samples.size
        return self._collect(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        """Return the samples still held in the filter."""
        return self._collect(self._resampler.resample(None))

    @staticmethod
    def _collect(frames: list[av.AudioFrame]) -> np.ndarray:
        if not frames:
            return np.zeros(0, np.float32)
        return np.concatenate([int16_to_float(f.to_ndarray().reshape(-1)) for f in frames])


def resample(samples: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Resample a whole clip of float32 mono samples (keeps its duration)."""
    if in_rate == out_rate:
        return samples.astype(np.float32)
    resampler = Resampler(in_rate, out_rate)
    return np.concatenate([resampler.process(samples), resampler.flush()])


class FrameToAgentPcm:
    """Turn decoded WebRTC ``AudioFrame``s (any layout and rate) into 16 kHz mono float32 chunks."""

    def __init__(self, out_rate: int = AGENT_RATE) -> None:
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=out_rate)

    def convert(self, frame: av.AudioFrame) -> np.ndarray:
        """Resample one frame; the output may be empty while the filter fills."""
        out = self._resampler.resample(frame)
        if not out:
            return np.zeros(0, np.float32)
        return np.concatenate([int16_to_float(f.to_ndarray().reshape(-1)) for f in out])


def read_wav(path: "str | os.PathLike[str]") -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV file as mono float32; return the samples and the sample rate."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        data = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
        return int16_to_float(data).reshape(-1, wav.getnchannels()).mean(axis=1), wav.getframerate()


def write_wav(path: "str | os.PathLike[str]", samples: np.ndarray, rate: int) -> None:
    """Write float32 mono samples as a 16-bit PCM WAV file."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(float_to_int16(samples).tobytes())
