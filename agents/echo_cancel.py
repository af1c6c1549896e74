"""Server-side acoustic echo cancellation: the agent's own voice, coming back in a caller's microphone
(a speakerphone, a laptop without headphones), is removed before the VAD, STT and barge-in hear it.

The server knows exactly what it played: ``EchoReference`` receives the agent's outgoing audio as
each 20 ms frame leaves (the reference) and fans it out to one ``EchoCanceller`` per caller, which runs
WebRTC's AEC3 (the ``AudioProcessingModule`` of the ``livekit`` wheel, in process, ~0.1 ms per 10 ms)
on that caller's decoded audio at 16 kHz. AEC3 finds the delay between the two itself — the delay of the
echo path, so the reference is handed to it in step with the time the caller's audio *arrived*, not
the time the listener reads it: on a loaded 2-core host the listener ran up to 1 s behind, the echo
seemed 0.7–1 s late and drifting, the detector (which looks 0.6 s back) found none and let it through.

Only while the agent's voice may be coming back (it played within the last 0.5 s) and only in a
microphone where its echo shows (``EchoDetector``) does the caller's audio take AEC3's output; else
it passes untouched. On top, ``EchoCanceller`` gates what AEC3 leaves while the agent talks: a 10 ms frame whose level is
far below the agent's recent level (``gate_db``) is taken for residual echo and silenced, so a speech
onset during a reply has to come from the caller. Speech from the caller — louder than an echo that
AEC3 has already cut by tens of dB — passes.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import av
import numpy as np

from parley.core.audio import AGENT_RATE, float_to_int16, frame_rms, int16_to_float
from parley.core.errors import ModelLoadError

log = logging.getLogger(__name__)
BLOCK = AGENT_RATE // 100  # AEC3 works on 10 ms blocks
LEARN_S = 2.0  # seconds of the agent's voice after which AEC3 is taken to know a microphone's echo path
# The agent's voice waits at most this long for the caller's audio of the same moment (the listener's
# buffer holds 3 s; audio further behind is dropped there).
FAR_HELD_S = 3.5
EchoMode = Literal["auto", "on", "off"]


def _block_rms(samples: np.ndarray) -> np.ndarray:
    """RMS of each whole 10 ms block of ``samples``."""
    return frame_rms(samples, BLOCK)


def load_aec_module() -> tuple[Any, Any]:
    """livekit's ``(AudioProcessingModule, AudioFrame)`` classes, or ``ModelLoadError`` naming the
    package that provides them."""
    try:
        from livekit.rtc import AudioFrame, AudioProcessingModule
    except Exception as exc:  # ImportError, or its native library failing to load
        raise ModelLoadError(
            f"server-side echo cancellation needs WebRTC's audio processing from the livekit package "
            f"(pip install 'livekit==1.2.*'): {exc!r}"
        ) from exc
    return AudioProcessingModule, AudioFrame


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


class EchoDetector:
    """Whether the agent's voice comes back in this microphone at all: the caller's raw audio contains a
    copy of the agent's (the waveforms correlate, at one delay up to ``max_delay_s``).

    Undecided at first (cancellation engaged); "no echo" once the agent has talked enough with no such
    copy — a headset, or a device that cancels its own echo — and then the caller's audio passes
    untouched, because AEC3 with no echo path to learn still damps the caller's first words over the
    agent's by 10–30 dB; "echo" again (for at least ``hold_s``) as soon as the copy shows. Unrelated
    speech (the caller talking over the agent) does not correlate with it, waveform to waveform.
    """

    RATE = 8000  # decided on every other sample: plenty for speech

    def __init__(self, window_s: float = 1.2, max_delay_s: float = 0.6, echo_at: float = 0.25, none_below: float = 0.12,
                 hold_s: float = 15.0) -> None:
        self._window = int(window_s * self.RATE)
        self._lags = int(max_delay_s * self.RATE)
        self._far = np.zeros(self._window + self._lags, np.float32)
        self._near = np.zeros(self._window, np.float32)
        self._far_filled = self._near_filled = 0
        self._far_levels: collections.deque[float] = collections.deque(maxlen=int(window_s * 100))
        self._echo_at, self._none_below, self._hold_s = echo_at, none_below, hold_s
        self.echo: bool | None = None  # None: not decided yet
        self._echo_seen_at = -1e9
        self._since_check = 0
        self._last_lag = -1  # the lag of the last likeness over echo_at (-1: none)
        self._quiet = 0  # decisions in a row below none_below
        self.likeness = 0.0  # the last peak correlation measured

    @staticmethod
    def _push(ring: np.ndarray, blocks: np.ndarray) -> int:
        half = blocks.reshape(-1)[::2]
        n = min(half.size, ring.size)
        ring[:-n] = ring[n:]
        ring[-n:] = half[-n:]
        return n

    def far(self, blocks: np.ndarray) -> None:
        self._far_filled += self._push(self._far, blocks)
        self._far_levels.extend(10 * np.log10(np.mean(np.square(blocks, dtype=np.float64), axis=1) + 1e-9))

    def near(self, blocks: np.ndarray) -> None:
        self._near_filled += self._push(self._near, blocks)
        self._since_check += len(blocks)
        if self._since_check >= 20 and self._near_filled >= self._near.size and self._far_filled >= self._far.size:
            self._since_check = 0
            self._decide()

    def _decide(self) -> None:
        levels = np.array(self._far_levels)
        if np.count_nonzero(levels > -45) < levels.size // 3:
            return  # the agent has not talked enough lately to tell
        near = self._near - self._near.mean()
        far = self._far - self._far.mean()
        size = 1 << int(np.ceil(np.log2(far.size + near.size)))
        # correlation of the caller's window with the agent's audio `lag` samples before it
        full = np.fft.irfft(np.fft.rfft(far, size) * np.conj(np.fft.rfft(near, size)), size)
        lags = np.arange(self._lags + 1)
        raw = full[self._lags - lags]  # far index (lags - lag) aligns with near index 0
        energy = np.concatenate([[0.0], np.cumsum(far.astype(np.float64) ** 2)])
        far_norm = np.sqrt(energy[self._lags - lags + self._window] - energy[self._lags - lags])
        norm = far_norm * float(np.sqrt(np.sum(near.astype(np.float64) ** 2)))
        scores = np.where(norm > 1e-9, np.abs(raw) / np.maximum(norm, 1e-12), 0.0)
        best_lag = int(np.argmax(scores))
        best = float(scores[best_lag])
        steady = best >= self._echo_at and self._last_lag >= 0 and abs(best_lag - self._last_lag) <= 16
        self._last_lag = best_lag if best >= self._echo_at else -1
        self.likeness = best
        now = time.monotonic()
        if steady:
            if self.echo is not True:
                log.info("echo of the agent's voice detected in a caller's microphone (likeness %.2f, %d ms): cancelling it",
                         best, best_lag * 1000 // self.RATE)
            self.echo, self._echo_seen_at = True, now
            self._quiet = 0
        elif best < self._none_below:
            self._quiet += 1
            if self._quiet >= 2 and (self.echo is None or now - self._echo_seen_at > self._hold_s):
                if self.echo is not False:
                    log.info("no echo of the agent's voice in a caller's microphone (likeness %.2f): passing it through", best)
                self.echo = False
        else:
            self._quiet = 0


@dataclass
class EchoStats:
    """Counters of one canceller (or their sum): blocks, and echo energy before/after while the agent talked."""

    blocks: int = 0
    far_blocks: int = 0  # blocks while the agent's voice was playing and cancellation was engaged
    passed_blocks: int = 0  # blocks passed untouched: the agent silent, or no echo found in that microphone
    gated_blocks: int = 0  # of those, silenced as residual echo
    energy_in: float = 0.0  # near-end energy before AEC, while the agent talked
    energy_out: float = 0.0  # after AEC and the gate
    cpu_s: float = 0.0  # CPU time of the thread that ran it (the event loop), not wall time

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
        module, self._frame = load_aec_module()
        self._apm = module(echo_cancellation=True, noise_suppression=False, high_pass_filter=True, auto_gain_control=False)
        self._render_pending = np.zeros(0, np.float32)
        self._far_queue: collections.deque[tuple[float, np.ndarray]] = collections.deque()  # sent, not yet rendered
        self._capture_pending = np.zeros(0, np.float32)
        self._gate = 10 ** (-gate_db / 20)
        self._hold_s = hold_s
        self._far_level = 0.0  # the agent's recent level (a slowly falling peak of block RMS)
        self._far_at = 0.0  # when the agent's voice last had sound
        self._far_sound_blocks = 0  # 10 ms blocks of the agent's voice with sound, so far
        self.stats = EchoStats()
        self.detector = EchoDetector()
        self.closed = False

    def _frame_of(self, pcm: np.ndarray) -> Any:
        return self._frame(pcm.tobytes(), AGENT_RATE, 1, BLOCK)

    def render(self, samples: np.ndarray, sent_at: float | None = None) -> None:
        """The agent's voice as it leaves for this caller (at ``sent_at``, monotonic; now if not given),
        16 kHz float32, in any lengths. It reaches AEC3 when the caller's audio that arrived after it is
        cancelled (``capture``): the two stay in their true order however far behind the listener runs."""
        self._far_queue.append((time.monotonic() if sent_at is None else sent_at, samples))
        self._render_until(time.monotonic() - FAR_HELD_S)

    def _render_until(self, until: float) -> None:
        """Hand AEC3 (and the detector) the agent's voice sent up to ``until``."""
        while self._far_queue and self._far_queue[0][0] <= until:
            sent_at, samples = self._far_queue.popleft()
            self._render_now(samples, sent_at)

    def _render_now(self, samples: np.ndarray, sent_at: float) -> None:
        started = time.thread_time()
        pending = np.concatenate([self._render_pending, samples])
        usable = pending.size - pending.size % BLOCK
        pcm = float_to_int16(pending[:usable])
        if usable:
            self.detector.far(pending[:usable].reshape(-1, BLOCK))
        levels = _block_rms(pending[:usable])
        if levels.size:
            self._far_level = max(float(levels.max()), self._far_level * 0.97 ** levels.size)
            sounding = int(np.count_nonzero(levels > 1e-3))
            if sounding:
                self._far_at = sent_at
            self._far_sound_blocks += sounding
        for start in range(0, usable, BLOCK):
            self._apm.process_reverse_stream(self._frame_of(pcm[start : start + BLOCK]))
        self._render_pending = pending[usable:]
        self.stats.cpu_s += time.thread_time() - started

    @property
    def learning(self) -> bool:
        """Whether AEC3 may not have learned this microphone's echo path yet: echo found or not ruled out,
        and less than ``LEARN_S`` of the agent's voice heard so far. (In a call, the first reply's echo
        leaked past it once in 60 replies, 0.7 s in; offline it converges within the first words.)"""
        return self.detector.echo is not False and self._far_sound_blocks < LEARN_S * 100

    def agent_audible(self, at: float) -> bool:
        """Whether the agent's voice had sound within ``hold_s`` before ``at`` (its echo may still be arriving)."""
        return at - self._far_at < self._hold_s

    def capture(self, samples: np.ndarray, arrived_at: float | None = None) -> np.ndarray:
        """The caller's audio, 16 kHz float32, as it arrived (at ``arrived_at``, monotonic; now if not
        given); returns it with the echo removed, in whole 10 ms blocks (what is left over waits for the
        next call, at most 10 ms)."""
        arrived_at = time.monotonic() if arrived_at is None else arrived_at
        self._render_until(arrived_at)
        started = time.thread_time()
        pending = np.concatenate([self._capture_pending, samples])
        usable = pending.size - pending.size % BLOCK
        pcm = float_to_int16(pending[:usable])
        out = np.empty(usable, np.int16)
        for start in range(0, usable, BLOCK):
            frame = self._frame_of(pcm[start : start + BLOCK])
            self._apm.process_stream(frame)
            out[start : start + BLOCK] = np.frombuffer(frame.data, np.int16)
        self._capture_pending = pending[usable:]
        cleaned = int16_to_float(out)
        blocks = usable // BLOCK
        self.stats.blocks += blocks
        if blocks:
            self.detector.near(pending[:usable].reshape(blocks, BLOCK))
        if self.detector.echo is False or not self.agent_audible(arrived_at):
            # No echo in this microphone, or none possible now (the agent has been silent for hold_s):
            # the caller's audio passes untouched (AEC3 still sees it, and keeps its model of the room).
            self.stats.passed_blocks += blocks
            self.stats.cpu_s += time.thread_time() - started
            return pending[:usable].copy()
        if blocks:
            before, after = pending[:usable].reshape(blocks, BLOCK), cleaned.reshape(blocks, BLOCK)
            residual = np.sqrt(np.mean(np.square(after, dtype=np.float64), axis=1)) < self._far_level * self._gate
            after[residual] = 0.0  # residual echo: not the caller
            self.stats.far_blocks += blocks
            self.stats.gated_blocks += int(residual.sum())
            self.stats.energy_in += float(np.sum(np.square(before, dtype=np.float64)))
            self.stats.energy_out += float(np.sum(np.square(after, dtype=np.float64)))
        self.stats.cpu_s += time.thread_time() - started
        return cleaned


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
