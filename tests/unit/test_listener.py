"""The listener's part in echo-aware barge-in: which speech onsets wait to be confirmed while a caller's
echo canceller is still learning (real AEC3, real frames; the endpointer is a stand-in that reports an
onset in a chosen window, so the test can place it in time)."""

from __future__ import annotations

import asyncio
import fractions
import time
from concurrent.futures import ThreadPoolExecutor

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from parley.agents.echo_cancel import ECHO_RETURN_MIN_S, EchoCanceller
from parley.agents.endpointer import SpeechStarted
from parley.agents.listener import Listener
from parley.core.audio import AGENT_RATE, stamp_arrival

WINDOW = 320  # 20 ms at 16 kHz: one frame per window


class _OnsetAt:
    """A stand-in endpointer: speech starts in window number ``onset``."""

    window_samples = WINDOW

    def __init__(self, onset: int) -> None:
        self._onset, self._windows = onset, 0

    def process(self, chunk: np.ndarray, now: float) -> list[SpeechStarted]:
        self._windows += 1
        return [SpeechStarted(at=now)] if self._windows == self._onset + 1 else []


class _Microphone(MediaStreamTrack):
    """20 ms frames of silence, each stamped as arriving 20 ms after the one before from ``start``."""

    kind = "audio"

    def __init__(self, frames: int, start: float) -> None:
        super().__init__()
        self._frames, self._start, self._sent = frames, start, 0

    async def recv(self) -> av.AudioFrame:
        if self._sent == self._frames:
            raise MediaStreamError
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48_000, self._sent * 960, fractions.Fraction(1, 48_000)
        stamp_arrival(frame, self._start + self._sent * 0.02)
        self._sent += 1
        return frame


def _agent_voice(canceller: EchoCanceller, sent_from: float, seconds: float) -> None:
    t = np.arange(int(seconds * AGENT_RATE)) / AGENT_RATE
    voice = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for i, start in enumerate(range(0, voice.size, 320)):
        canceller.render(voice[start : start + 320], sent_from + i * 0.02)


@pytest.mark.parametrize(("onset_after_voice_s", "held"), [
    (None, False),  # the agent has not spoken: nothing of it can come back
    (-0.1, False),  # the caller began before the agent's first sound
    (ECHO_RETURN_MIN_S - 0.03, False),  # ... or too soon after it for its echo to be back
    (0.3, True),  # 0.3 s into it: the onset may be the agent's voice coming back
])
async def test_an_onset_waits_to_be_confirmed_only_where_it_may_be_the_agents_echo(onset_after_voice_s, held):
    canceller = EchoCanceller()
    assert canceller.learning
    start = time.monotonic() + 10  # the microphone's clock, ahead of now (rendered as captures reach it)
    onset_window = 50  # 1 s into the call
    if onset_after_voice_s is not None:
        _agent_voice(canceller, start + (onset_window + 1) * 0.02 - onset_after_voice_s, 2.0)
    events: list[SpeechStarted] = []
    with ThreadPoolExecutor(1) as executor:
        listener = Listener(_OnsetAt(onset_window), executor, events.append, canceller)  # type: ignore[arg-type]
        with pytest.raises(MediaStreamError):
            await asyncio.wait_for(listener.run(_Microphone(100, start)), 10)
    assert len(events) == 1
    assert events[0].confirm_first is held
