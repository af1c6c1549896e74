"""``Turn``: one agent reply — its text as generated, its audio positions, and what the caller heard of it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from parley.agents.llm.base import ChatMessage
from parley.agents.stage_timer import TurnTimer
from parley.agents.text import has_cjk
from parley.agents.profile import Speaker

if TYPE_CHECKING:
    from parley.agents.speculation import SpeculativeReply


@dataclass(frozen=True)
class Segment:
    """One spoken chunk: its samples in the playout buffer and its characters in the reply."""

    start: int
    end: int
    raw_start: int
    raw_end: int


def heard_chars(segments: list[Segment], played: int) -> int:
    """How many characters of the reply had been played when playout reached sample ``played``."""
    heard = 0
    for seg in segments:
        if played >= seg.end:
            heard = seg.raw_end
            continue
        if played > seg.start:
            fraction = (played - seg.start) / (seg.end - seg.start)
            heard = seg.raw_start + int(fraction * (seg.raw_end - seg.raw_start))
        break
    return heard


def heard_prefix(reply: str, chars: int) -> str:
    """The reply cut to ``chars`` characters, backed off to a whole word."""
    if chars >= len(reply):
        return reply
    cut = reply[:chars]
    following = reply[chars : chars + 1]
    if following.isalnum() and cut[-1:].isalnum() and not has_cjk(following + cut[-1]):
        cut = cut[: max(0, cut.rfind(" "))]  # do not keep half a word (Chinese: every character is whole)
    return cut.rstrip()


@dataclass
class Turn:
    """An agent turn from the caller's transcript to the last frame of the reply (or its interruption)."""

    id: int
    timer: TurnTimer
    user_text: str
    speaker: Speaker | None = None  # who asked
    utterance_id: int = 0  # the caller's line this turn answers (a folded question keeps the first one's)
    samples: np.ndarray | None = None  # the question's audio (16 kHz), to transcribe it whole if it is continued
    user_message: ChatMessage | None = None
    assistant_message: ChatMessage | None = None  # what the history keeps of the reply, once it is over
    generated: list[str] = field(default_factory=list)
    generated_all: bool = False  # the LLM's reply is complete (it may still be playing, or held)
    segments: list[Segment] = field(default_factory=list)
    audio_started: bool = False
    # Its asker began speaking again within ``TALKED_OVER_S`` of its first sound: they began together, and
    # the caller cannot have heard it before they spoke (their words fold into its question, as before any sound).
    talked_over: bool = False
    interrupted_at: int | None = None  # playout position when the caller barged in
    dropped: bool = False  # superseded by a newer utterance before any of it was heard
    task: asyncio.Task[None] | None = None
    speculation: "SpeculativeReply | None" = None  # a reply started at the pause, adopted if the question matches
    speculative: bool = False  # the reply was that speculative one

    @property
    def reply(self) -> str:
        return "".join(self.generated)

    @property
    def active(self) -> bool:
        return self.task is not None and not self.task.done() and self.interrupted_at is None and not self.dropped

    @property
    def unheard(self) -> bool:
        """Nothing of the reply reached its asker before they spoke again: no sound yet, or it began as they did."""
        return not self.audio_started or self.talked_over

    def remembered_reply(self) -> str:
        """What the history keeps: the reply as generated, or only what was heard before an interruption."""
        reply = self.reply
        if self.interrupted_at is None:
            return reply.strip()
        return heard_prefix(reply, heard_chars(self.segments, self.interrupted_at)).strip()
