"""Server-side acoustic echo cancellation: the agent's own voice, coming back in a caller's microphone
(a speakerphone, a laptop without headphones), is removed before the VAD, STT and barge-in hear it.

The server knows exactly what it played: ``EchoReference`` receives the agent's outgoing audio as
each 20 ms frame leaves (the reference) and fans it out to one ``EchoCanceller`` per caller, which runs
WebRTC's AEC3 (the ``AudioProcessingModule`` of the ``livekit`` wheel, in process, ~0.1 ms per 10 ms)
on that caller's decoded audio at 16 kHz. AEC3 finds the delay between the two itself.

On top, ``EchoCanceller`` gates what AEC3 leaves while the agent talks: a 10 ms frame whose level is
far below the agent's recent level (``gate_db``) is taken for residual echo and silenced, so a speech
onset during a reply has to come from the caller. Speech from the caller — louder than an echo that
AEC3 has already cut by tens of dB — passes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import av
import numpy as np

from parley.core.audio import AGENT_RATE, float_to_int16, int16_to_float
from parley.core.errors import ModelLoadError

log = logging.getLogger(__name__)
BLOCK = AGENT_RATE // 100  # AEC3 works on 10 ms blocks
EchoMode = Literal["auto", "on", "off"]


def _rms(block: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(block, dtype=np.float64)))) if block.size else 0.0


def load_aec_module() -> Any:
    """The AudioProcessingModule class, or ``ModelLoadError`` naming the package that provides it."""
    try:
        from livekit.rtc import AudioFrame, AudioProcessingModule  # noqa: F401
    except Exception as exc:  # ImportError, or its native library failing to load
        raise ModelLoadError(
            f"server-side echo cancellation needs WebRTC's audio processing from the livekit package "
            f"(pip install 'livekit==1.2.*'): {exc!r}"
        ) from exc
    return AudioProcessingModule


def echo_cancellation_available(mode: EchoMode) -> bool:
    """Whether calls get server-side AEC: ``off`` never; ``on`` always (``ModelLoadError`` if it cannot
    load); ``auto`` when the livekit wheel loads, else off with one warning."""
    if mode == "off":
        return False
    try:
        load_aec_module()
    except ModelLoadError as exc:
        if mode == "on":
            raise
        log.warning("%s; calls go on without it (audio.echo_cancellation = \"auto\")", exc)
        return False
    return True


@dataclass
class EchoStats:
    """Counters of one canceller (or their sum): blocks, and echo energy before/after while the agent talked."""

    blocks: int = 0
    far_blocks: int = 0  # blocks while the agent's voice was playing
    gated_blocks: int = 0  # of those, silenced as residual echo
    energy_in: float = 0.0  # near-end energy before AEC, while the agent talked
    energy_out: float = 0.0  # after AEC and the gate
    cpu_s: float = 0.0

    def add(self, other: "EchoStats") -> None:
        for key, value in vars(other).items():
            setattr(self, key, getattr(self, key) + value)

    @property
    def erle_db(self) -> float | None:
        """Echo return loss enhancement over the blocks the agent talked in (None before any)."""
        if not self.far_blocks or self.energy_in <= 0:
            return None
        return 10 * float(np.log10(self.energy_in / max(self.energy_out, 1e-12)))


class EchoCanceller:
    """One caller's AEC3 instance: ``render`` the agent's audio as played, ``capture`` the caller's."""

    def __init__(self, gate_db: float = 30.0, hold_s: float = 0.5) -> None:
        module = load_aec_module()
        from livekit.rtc import AudioFrame

        self._frame = AudioFrame
        self._apm = module(echo_cancellation=True, noise_suppression=False, high_pass_filter=True, auto_gain_control=False)
        self._render_pending = np.zeros(0, np.float32)
        self._capture_pending = np.zeros(0, np.float32)
        self._gate = 10 ** (-gate_db / 20)
        self._hold_s = hold_s
        self._far_level = 0.0  # the agent's recent level (a slowly falling peak of block RMS)
        self._far_at = 0.0  # when the agent's voice last had sound
        self.stats = EchoStats()
        self.closed = False

    def _block(self, samples: np.ndarray) -> Any:
        return self._frame(float_to_int16(samples).tobytes(), AGENT_RATE, 1, BLOCK)

    def render(self, samples: np.ndarray) -> None:
        """The agent's voice as it leaves for this caller, 16 kHz float32, in any lengths."""
        started = time.perf_counter()
        pending = np.concatenate([self._render_pending, samples])
        usable = pending.size - pending.size % BLOCK
        now = time.monotonic()
        for start in range(0, usable, BLOCK):
            block = pending[start : start + BLOCK]
            level = _rms(block)
            self._far_level = max(level, self._far_level * 0.97)
            if level > 1e-3:
                self._far_at = now
            self._apm.process_reverse_stream(self._block(block))
        self._render_pending = pending[usable:]
        self.stats.cpu_s += time.perf_counter() - started

    @property
    def agent_audible(self) -> bool:
        """Whether the agent's voice had sound within the last ``hold_s`` (its echo may still be arriving)."""
        return time.monotonic() - self._far_at < self._hold_s

    def capture(self, samples: np.ndarray) -> np.ndarray:
        """The caller's audio, 16 kHz float32; returns it with the echo removed, in whole 10 ms blocks
        (what is left over waits for the next call, at most 10 ms)."""
        started = time.perf_counter()
        pending = np.concatenate([self._capture_pending, samples])
        usable = pending.size - pending.size % BLOCK
        out = np.empty(usable, np.float32)
        far = self.agent_audible
        for start in range(0, usable, BLOCK):
            block = pending[start : start + BLOCK]
            frame = self._block(block)
            self._apm.process_stream(frame)
            cleaned = int16_to_float(np.frombuffer(bytes(frame.data), np.int16))
            if far:
                self.stats.far_blocks += 1
                self.stats.energy_in += float(np.sum(np.square(block, dtype=np.float64)))
                if _rms(cleaned) < self._far_level * self._gate:
                    cleaned = np.zeros(BLOCK, np.float32)  # residual echo: not the caller
                    self.stats.gated_blocks += 1
                self.stats.energy_out += float(np.sum(np.square(cleaned, dtype=np.float64)))
            out[start : start + BLOCK] = cleaned
            self.stats.blocks += 1
        self._capture_pending = pending[usable:]
        self.stats.cpu_s += time.perf_counter() - started
        return out


@dataclass(eq=False)
class EchoReference:
    """The agent's outgoing voice in a room, fanned out as the reference of every caller's canceller."""

    gate_db: float = 30.0
    _cancellers: list[EchoCanceller] = field(default_factory=list)
    _resampler: Any = None
    ended: EchoStats = field(default_factory=EchoStats)  # cancellers closed so far (shared by the process's rooms)

    def open(self) -> EchoCanceller:
        """A canceller for one more caller, fed from now on."""
        canceller = EchoCanceller(self.gate_db)
        self._cancellers.append(canceller)
        return canceller

    def close(self, canceller: EchoCanceller) -> None:
        if canceller in self._cancellers:
            self._cancellers.remove(canceller)
            self.ended.add(canceller.stats)
        canceller.closed = True

    def played(self, frame: av.AudioFrame) -> None:
        """One frame of the agent's voice has just been sent (48 kHz): every canceller hears it."""
        if not self._cancellers:
            return
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=AGENT_RATE)
        pcm = [int16_to_float(f.to_ndarray().reshape(-1)) for f in self._resampler.resample(frame)]
        if not pcm:
            return
        samples = np.concatenate(pcm)
        for canceller in self._cancellers:
            canceller.render(samples)

    def live_stats(self) -> EchoStats:
        """The counters of the callers' cancellers still open (closed ones are added to ``ended``)."""
        total = EchoStats()
        for canceller in self._cancellers:
            total.add(canceller.stats)
        return total
