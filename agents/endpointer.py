"""``Endpointer``: turn a stream of 16 kHz audio into utterances using VAD probabilities, silence and,
optionally, an end-of-turn model that hears whether the speaker sounds finished."""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from parley.agents.vad.base import VadStream

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class SpeechStarted:
    at: float  # monotonic time of the chunk in which speech began
    # Set by the listener while this microphone's echo canceller is still learning the echo path: the
    # onset may be the agent's own voice, so the agent stops only at ``SpeechConfirmed``.
    confirm_first: bool = False


@dataclass(frozen=True)
class SpeechConfirmed:
    at: float  # the speech that started has lasted ``min_speech_ms``: not a blip


@dataclass(frozen=True)
class SpeechDiscarded:
    at: float  # the speech that started was a blip (click, cough, noise burst)


@dataclass(frozen=True)
class InterimAudio:
    samples: np.ndarray  # the utterance so far, for an interim transcript


@dataclass(frozen=True)
class SpeechPaused:
    """The speaker went quiet for ``tail_ms``: ``samples`` is the utterance as it will be committed if no
    more speech comes — transcribe it now, and the transcript is ready sooner (overlap)."""

    samples: np.ndarray
    pause: int  # matches ``Utterance.pause`` when the utterance ends in this pause


@dataclass(frozen=True)
class SpeechResumed:
    """Speech came back after a ``SpeechPaused``: work started on that pause's samples is stale."""

    pause: int
    silence_ms: float = 0.0  # how long the pause lasted


@dataclass(frozen=True)
class Utterance:
    samples: np.ndarray  # 16 kHz mono float32, with a little pre-roll and ``tail_ms`` of trailing silence
    speech_end_at: float  # arrival time of the last window judged speech
    endpoint_at: float  # arrival time of the window that completed the endpoint
    speech_ms: float = 0.0  # how much of it the VAD judged speech
    pause: int | None = None  # the ``SpeechPaused`` whose samples these are (None: cut at max_utterance_s)
    turn_probability: float | None = None  # the end-of-turn model's last verdict, when one was asked
    turn_model_ms: float = 0.0  # time spent in the end-of-turn model for this utterance

    @property
    def duration_s(self) -> float:
        return self.samples.size / SAMPLE_RATE


class Endpointer:
    """Segments speech into utterances.

    Without ``end_of_turn`` an utterance ends after ``endpoint_silence_ms`` of non-speech. With it,
    the model is asked once ``turn_check_silence_ms`` of a pause have passed: "finished"
    (probability ≥ ``turn_threshold``) ends the utterance at once; otherwise the endpointer keeps
    listening, asks again every ``turn_recheck_ms`` of further silence (a pause that goes on sounds
    more and more finished), and ends it after ``turn_max_silence_ms`` of silence at the latest — or
    after ``words_done_silence_ms`` (0: never) once the words of the pause are known to read as a whole
    sentence (``words_done``: the voice may sound unfinished, the words say otherwise).

    With ``words_first_ms``, a pause whose words are being transcribed and judged (``await_words``) does
    not ask the model until they are (``words_done`` or ``words_heard``) or that much silence has passed:
    words that read whole (``words_done`` alone) end it at ``words_done_silence_ms`` without the model,
    which runs where ``words_heard`` says so. On a 2-core CPU its inference beside the LLM's judgement of
    those very words took as long again as the judgement itself.

    ``tail_ms`` into every pause, ``SpeechPaused`` offers the utterance so far; an utterance that ends
    in that pause carries exactly those samples, so a transcript started then is the final one. With
    ``tail_quiet_peak``, the tail counts from the last window with a sample above that peak once the VAD
    hears silence: the VAD's speech outlasts the last audible sound by ~60 ms (its context).
    A blip shorter than ``min_speech_ms`` of speech is dropped (clicks, coughs) as soon as
    ``discard_silence_ms`` of silence follows it. Every ``interim_ms`` of utterance, the audio so far
    is offered for an interim transcript.
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
        end_of_turn: Callable[[np.ndarray], float] | None = None,
        turn_check_silence_ms: int = 200,
        turn_max_silence_ms: int = 1500,
        turn_threshold: float = 0.5,
        turn_recheck_ms: int = 300,
        tail_ms: int = 200,
        words_done_silence_ms: int = 500,
        tail_quiet_peak: float = 0.0,
        words_first_ms: int = 0,
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
        self._end_of_turn = end_of_turn
        self._check_ms = turn_check_silence_ms
        self._max_silence_ms = max(turn_max_silence_ms, turn_check_silence_ms)
        self._turn_threshold = turn_threshold
        self._recheck_ms = turn_recheck_ms
        self._words_done_ms = words_done_silence_ms
        # The pause whose words read as a whole sentence. Set from the event loop's thread while
        # ``process`` runs on the VAD's: a single attribute written there and read here, matched against
        # the pause counter, so a mark that arrives late for a pause already over does nothing.
        self._words_done_pause = 0
        # ... and, the same way, the pause whose words are being transcribed and judged, and the last pause
        # whose words are known and leave the end of the turn to the model.
        self._words_awaited_pause = 0
        self._words_heard_pause = 0
        self._words_first_ms = words_first_ms if end_of_turn is not None and words_done_silence_ms > 0 else 0
        first_decision = turn_check_silence_ms if end_of_turn else endpoint_silence_ms
        self._tail_ms = min(tail_ms, first_decision)
        self._quiet_peak = tail_quiet_peak
        self._pauses = 0
        self._preroll: collections.deque[np.ndarray] = collections.deque(maxlen=max(1, int(preroll_ms / self._window_ms)))
        self._pending = np.zeros(0, np.float32)
        self._reset_utterance()

    @property
    def window_samples(self) -> int:
        return self._window

    @property
    def silence_ms(self) -> float:
        """Silence since the last speech of the utterance under way (0 outside one). Read from other threads
        too: a single float the VAD's thread writes."""
        return self._silence_ms

    def _reset_utterance(self) -> None:
        self._active = False
        self._windows: list[np.ndarray] = []
        self._speech_ms = 0.0
        self._silence_ms = 0.0
        self._quiet_ms = 0.0  # since the last window with a sample louder than ``tail_quiet_peak``
        self._last_speech_at = 0.0
        self._snapshot: int | None = None  # windows offered by this pause's SpeechPaused
        self._next_check_ms: float | None = None  # silence at which the end-of-turn model is asked next
        self._turn_probability: float | None = None
        self._turn_model_ms = 0.0

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
            events += self._step(window, prob, now)
        return events

    def _step(self, window: np.ndarray, prob: float, now: float) -> list["EndpointEvent"]:
        if not self._active:
            if prob < self._on:
                self._preroll.append(window)
                return []
            self._active = True
            self._windows = [*self._preroll, window]
            self._preroll.clear()
            self._speech_ms = self._window_ms
            self._last_speech_at = now
            return [SpeechStarted(at=now), *([SpeechConfirmed(at=now)] if self._speech_ms >= self._min_speech_ms else [])]
        self._windows.append(window)
        events: list[EndpointEvent] = []
        loud = not self._quiet_peak or float(np.abs(window).max()) > self._quiet_peak
        self._quiet_ms = 0.0 if loud else self._quiet_ms + self._window_ms
        if prob >= self._off:
            confirmed = self._speech_ms < self._min_speech_ms <= self._speech_ms + self._window_ms
            self._speech_ms += self._window_ms
            pause_ms, self._silence_ms = self._silence_ms, 0.0
            self._last_speech_at = now
            if confirmed:
                events.append(SpeechConfirmed(at=now))
            if self._snapshot is not None:
                events.append(SpeechResumed(self._pauses, pause_ms))
            self._snapshot, self._next_check_ms = None, None  # the pause is over: the next one is judged afresh
        else:
            self._silence_ms += self._window_ms
        long_enough = self._speech_ms >= self._min_speech_ms
        if not long_enough and self._silence_ms >= self._discard_silence_ms:
            self._reset_utterance()
            return [SpeechDiscarded(at=now)]
        if long_enough and self._snapshot is None and self._silence_ms > 0 and max(self._silence_ms, self._quiet_ms) >= self._tail_ms:
            self._pauses += 1
            self._snapshot = len(self._windows)
            events.append(SpeechPaused(np.concatenate(self._windows), self._pauses))
        if len(self._windows) >= self._max_windows:
            return [*events, self._commit(now, long_enough, whole=True)]
        if self._turn_is_over():
            return [*events, self._commit(now, long_enough)]
        if self._interim_windows and prob >= self._off and len(self._windows) % self._interim_windows == 0:
            events.append(InterimAudio(np.concatenate(self._windows)))
        return events

    def words_done(self, pause: int) -> None:
        """The words of ``pause`` (a ``SpeechPaused``'s number) read as a whole sentence: if that pause is
        still going on, it ends the turn once ``words_done_silence_ms`` of silence have passed."""
        self._words_done_pause = pause

    def await_words(self, pause: int) -> None:
        """The words of ``pause`` are being transcribed and judged: with ``words_first_ms``, the model is
        not asked in that pause before they are known (``words_done`` / ``words_heard``)."""
        self._words_awaited_pause = pause

    def words_heard(self, pause: int) -> None:
        """The words of ``pause`` are known and the model is to decide (they are not whole, not judged,
        or nothing is under way on them yet), as soon as it is due."""
        self._words_heard_pause = pause

    def _waiting_for_words(self, words_done: bool) -> bool:
        """Whether the model is not to be asked now (``words_first_ms``): the words of this pause are awaited
        and still being judged, or read whole without a ``words_heard`` (they end it at ``words_done_silence_ms``)."""
        if not self._words_first_ms or self._snapshot is None or self._words_awaited_pause != self._pauses:
            return False
        if self._words_heard_pause == self._pauses:
            return False
        return words_done or self._silence_ms < self._words_first_ms

    def _turn_is_over(self) -> bool:
        if self._end_of_turn is None:
            return self._silence_ms >= self._silence_ms_needed
        if self._silence_ms >= self._max_silence_ms:
            return True
        words_done = self._words_done_ms > 0 and self._snapshot is not None and self._words_done_pause == self._pauses
        if words_done and self._silence_ms >= self._words_done_ms:
            return True
        if self._waiting_for_words(words_done):
            return False
        due = self._check_ms if self._next_check_ms is None else self._next_check_ms
        if self._silence_ms < due or self._speech_ms < self._min_speech_ms:
            return False
        self._next_check_ms = self._silence_ms + self._recheck_ms if self._recheck_ms else float("inf")
        started = time.perf_counter()
        self._turn_probability = self._end_of_turn(np.concatenate(self._windows))
        self._turn_model_ms += (time.perf_counter() - started) * 1000
        # (what a hesitation was made of, in a DEBUG log: the voice's verdict at each check of a pause)
        log.debug("end of turn after %.0f ms of silence: %.2f", self._silence_ms, self._turn_probability)
        return self._turn_probability >= self._turn_threshold

    def _commit(self, now: float, long_enough: bool, whole: bool = False) -> "EndpointEvent":
        windows = self._windows if whole or self._snapshot is None else self._windows[: self._snapshot]
        pause = None if whole or self._snapshot is None else self._pauses
        utterance = Utterance(
            np.concatenate(windows), self._last_speech_at, now, self._speech_ms, pause,
            self._turn_probability, round(self._turn_model_ms, 1),
        )
        self._reset_utterance()
        return utterance if long_enough else SpeechDiscarded(at=now)

    def reset(self) -> None:
        """Drop any partial utterance and the VAD state."""
        self._reset_utterance()
        self._pending = np.zeros(0, np.float32)
        self._preroll.clear()
        self._vad.reset()


EndpointEvent = SpeechStarted | SpeechConfirmed | SpeechDiscarded | SpeechPaused | SpeechResumed | InterimAudio | Utterance
