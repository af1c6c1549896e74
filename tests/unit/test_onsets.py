"""SpeechOnsets: where each caller's speech began against playout (blips and unconfirmed onsets)."""

from __future__ import annotations

import pytest

from parley.agents import onsets as onsets_module
from parley.agents.onsets import BLIP_THEN_SPEECH_S, SpeechOnsets


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(onsets_module.time, "monotonic", clock)
    return clock


@pytest.mark.parametrize("gap_s, expected", [(BLIP_THEN_SPEECH_S - 0.05, 480), (BLIP_THEN_SPEECH_S + 0.05, 2400)])
def test_speech_soon_after_a_blip_begins_at_the_blip(clock: Clock, gap_s: float, expected: int) -> None:
    played = [480]
    onsets = SpeechOnsets(lambda: played[0])
    assert onsets.began("ada") == 480 and onsets.speaking("ada")
    assert onsets.discarded("ada") is False  # a plain blip: its onset was never held
    assert not onsets.speaking("ada")
    clock.now += gap_s
    played[0] = 2400
    assert onsets.began("ada") == expected
    onsets.ended("ada")
    assert not onsets.speaking("ada")
    assert onsets.began("ada") == 2400  # a blip counts once


def test_an_unconfirmed_onset_is_given_back_when_confirmed_and_told_when_discarded(clock: Clock) -> None:
    played = [960]
    onsets = SpeechOnsets(lambda: played[0])
    assert onsets.confirmed("ada") is None  # nothing held
    onsets.began("ada")
    onsets.hold_unconfirmed("ada")
    played[0] = 4800
    assert onsets.confirmed("ada") == 960  # judged where it began, not where it was confirmed
    assert onsets.confirmed("ada") is None  # once
    onsets.began("bo")
    onsets.hold_unconfirmed("bo")
    assert onsets.discarded("bo") is True  # a blip of echo: the session does not act on it
    assert onsets.speaking("ada") and not onsets.speaking("bo")
