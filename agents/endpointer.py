"""``Endpointer``: turn a stream of 16 kHz audio into utterances using VAD probabilities and silence."""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from parley.agents.vad.base import VadStream

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class SpeechStarted:
    at: float  # monotonic time of the chunk in which speech began


@dataclass(frozen=True)
class SpeechDiscarded:
    at: float  # the speech that started was a blip (click, cough, noise burst)


@dataclass(frozen=True)
class InterimAudio:
    samples: np.ndarray  # the utterance so far, for an interim transcript


@dataclass(frozen=True)
class Utterance:
    samples: np.ndarray  # 16 kHz mono float32, with a little pre-roll
    speech_end_at: float  # arrival time of the last window judged speech
    endpoint_at: float  # arrival time of the window that completed the endpoint silence
    speech_ms: float = 0.0  # how much of it the VAD judged speech

    @property
    def duration_s(self) -> float:
        return self.samples.size / SAMPLE_RATE


class Endpointer:
    """Segments speech: an utterance ends after ``endpoint_silence_ms`` of non-speech.

    A blip shorter than ``min_speech_ms`` of speech is dropped (clicks, coughs) as soon as
    ``discard_silence_ms`` of silence follows it. A short pause inside the silence threshold keeps
    the same utterance going. Every ``interim_ms`` of utterance, the audio so far is offered for an
    interim transcript.
    """

    def __init__(
        self,
        vad: VadStream,
        *,
        threshold: float = 0.5,
        min_speech_ms: int = 200,
        endpoint_silence_ms: int = 450,
        preroll_ms: int = 250,
        max_utterance_s: float = 20.0,
        discard_silence_ms: int = 200,
        interim_ms: int = 0,
    ) -> None:
        self._vad = vad
        self._window = vad.window_samples
        self._window_ms = self._window * 1000 / SAMPLE_RATE
        self._on = threshold
        self._off = max(0.05, threshold - 0.15)  # hysteresis: staying in speech is easier than entering it
        self._min_speech_ms = min_speech_ms
        self._silence_ms_needed = endpoint_silence_ms
        self._max_windows = int(max_utterance_s * 1000 / self._window_ms)
        self._discard_silence_ms = discard_silence_ms
        self._interim_windows = int(interim_ms / self._window_ms) if interim_ms else 0
        self._preroll: collections.deque[np.ndarray] = collections.deque(maxlen=max(1, int(preroll_ms / self._window_ms)))
        self._pending = np.zeros(0, np.float32)
        self._reset_utterance()

    @property
    def window_samples(self) -> int:
        return self._window

    def _reset_utterance(self) -> None:
        self._active = False
        self._windows: list[np.ndarray] = []
        self._speech_ms = 0.0
        self._silence_ms = 0.0
        self._last_speech_at = 0.0

    def process(self, samples: np.ndarray, now: float) -> list["EndpointEvent"]:
        """Feed samples that arrived at ``now``; return the events they complete. Blocking (runs the VAD)."""
        self._pending = np.concatenate([self._pending, samples.astype(np.float32)])
        whole = self._pending.size - self._pending.size % self._window
        if whole == 0:
            return []
        chunk, self._pending = self._pending[:whole], self._pending[whole:]
        events: list[EndpointEvent] = []
        for index, prob in enumerate(self._vad.probabilities(chunk)):
            window = chunk[index * self._window : (index + 1) * self._window]
            event = self._step(window, prob, now)
            if event is not None:
                events.append(event)
        return events

    def _step(self, window: np.ndarray, prob: float, now: float) -> "EndpointEvent | None":
        if not self._active:
            if prob < self._on:
                self._preroll.append(window)
                return None
            self._active = True
            self._windows = [*self._preroll, window]
            self._preroll.clear()
            self._speech_ms = self._window_ms
            self._last_speech_at = now
            return SpeechStarted(at=now)
        self._windows.append(window)
        if prob >= self._off:
            self._speech_ms += self._window_ms
            self._silence_ms = 0.0
            self._last_speech_at = now
        else:
            self._silence_ms += self._window_ms
        long_enough = self._speech_ms >= self._min_speech_ms
        if not long_enough and self._silence_ms >= self._discard_silence_ms:
            self._reset_utterance()
            return SpeechDiscarded(at=now)
        too_long = len(self._windows) >= self._max_windows
        if self._silence_ms < self._silence_ms_needed and not too_long:
            if self._interim_windows and prob >= self._off and len(self._windows) % self._interim_windows == 0:
                return InterimAudio(np.concatenate(self._windows))
            return None
        utterance = Utterance(np.concatenate(self._windows), self._last_speech_at, now, self._speech_ms)
        self._reset_utterance()
        return utterance if long_enough else SpeechDiscarded(at=now)

    def reset(self) -> None:
        """Drop any partial utterance and the VAD state."""
        self._reset_utterance()
        self._pending = np.zeros(0, np.float32)
        self._preroll.clear()
        self._vad.reset()


EndpointEvent = SpeechStarted | SpeechDiscarded | InterimAudio | Utterance
