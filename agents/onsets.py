"""``SpeechOnsets``: who is speaking now, and where the agent's playout was when each of them began.

The onset is what says whether a caller had heard the reply they talk over: one who starts within
``TALKED_OVER_S`` of its first sound began as the agent did (``talked_over``). Two things move an onset
earlier than the speech event that reports it: a blip discarded just before (a reader's "Un-" … "less to
be": the speech began at the blip), and an onset held unconfirmed while the caller's echo canceller is
still learning (it may be the agent's own voice, so nothing is done until it lasts — then it is judged
where it began).
"""

from __future__ import annotations

import time
from typing import Callable

from parley.agents.profile import Speaker
from parley.agents.reply_turn import Turn
from parley.core.audio import WEBRTC_RATE

# A caller who starts speaking within this much of the reply's first sound (sent; they hear it ~0.1 s
# later, their own voice reaches us ~0.1 s after they start, and nobody changes what they are about to
# say in under ~0.2 s) began as the agent did: they had not heard it. Their words are a continuation,
# folded into the question, not a barge-in. Someone reading sentence after sentence with ~0.9 s pauses
# met the agent's first syllable at the start of each sentence; with 0.6 s pauses, 0.33 s into it.
TALKED_OVER_S = 0.4
# Speech this soon after a blip was discarded (too short to count) began where the blip did: a reader's
# "Un-" … "less to be" — the onset that says whether they had heard the reply is the first one.
BLIP_THEN_SPEECH_S = 0.5


class SpeechOnsets:
    """Per speaker of one call: speaking now or not, the playout position at their onset, whether that
    onset waits for confirmation, and their last discarded blip. ``played`` reads playout's position."""

    def __init__(self, played: Callable[[], int]) -> None:
        self._played = played
        self._at: dict[str, int] = {}  # speakers in the middle of an utterance: playout position at its onset
        self._unconfirmed: set[str] = set()  # ... whose onset over the agent may be its own echo (not acted on yet)
        self._blips: dict[str, tuple[int, float]] = {}  # a blip just discarded: its onset position, and when

    def began(self, speaker_id: str) -> int:
        """``speaker_id`` started speaking: their onset's playout position (a blip's, if one was discarded
        less than ``BLIP_THEN_SPEECH_S`` ago)."""
        blip = self._blips.pop(speaker_id, None)
        if blip is not None and time.monotonic() - blip[1] <= BLIP_THEN_SPEECH_S:
            onset = blip[0]
        else:
            onset = self._played()
        self._at[speaker_id] = onset
        return onset

    def hold_unconfirmed(self, speaker_id: str) -> None:
        """Their onset may be the agent's echo: act on it only once ``confirmed``."""
        self._unconfirmed.add(speaker_id)

    def confirmed(self, speaker_id: str) -> int | None:
        """Their speech lasted: the held onset's position, to be acted on now (``None``: none was held)."""
        if speaker_id not in self._unconfirmed:
            return None
        self._unconfirmed.discard(speaker_id)
        return self._at.get(speaker_id)

    def discarded(self, speaker_id: str) -> bool:
        """Their speech was a blip: remembered as one; whether its onset had been held unconfirmed."""
        onset = self._at.pop(speaker_id, None)
        if onset is not None:
            self._blips[speaker_id] = (onset, time.monotonic())
        held = speaker_id in self._unconfirmed
        self._unconfirmed.discard(speaker_id)
        return held

    def ended(self, speaker_id: str) -> None:
        """Their utterance ended."""
        self._at.pop(speaker_id, None)
        self._unconfirmed.discard(speaker_id)

    def speaking(self, speaker_id: str) -> bool:
        """Whether ``speaker_id`` is in the middle of an utterance."""
        return speaker_id in self._at


def sounded_before(turn: Turn | None, speaker: Speaker, played_at_onset: int) -> float | None:
    """How long ``turn``'s reply to ``speaker`` had sounded when they began speaking (playout then at
    ``played_at_onset``), if less than ``TALKED_OVER_S``: they began together. ``None`` otherwise, or
    when ``turn`` is not a reply to them that has begun to sound."""
    if turn is None or not turn.active or not turn.audio_started or turn.speaker != speaker or not turn.segments:
        return None
    sounded_s = (played_at_onset - turn.segments[0].start) / WEBRTC_RATE
    return sounded_s if sounded_s < TALKED_OVER_S else None
