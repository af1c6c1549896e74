"""What an agent says about itself: typed events, free of any wire format.

``AgentSession`` emits these; the signaling side maps them to the messages clients receive
(``parley.signaling.agent_wire.to_wire``). A new event is added here and mapped there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from parley.agents.profile import Speaker
from parley.agents.dialogue_state import State


@dataclass(frozen=True)
class StateChanged:
    """The turn-taking state machine moved (``turn_id``: the turn it concerns, if any)."""

    state: State
    turn_id: int | None


@dataclass(frozen=True)
class CallerTranscript:
    """What a person said: interims, then the final; one ``utterance_id`` per line on screen."""

    speaker: Speaker
    turn_id: int
    text: str
    final: bool
    utterance_id: int


@dataclass(frozen=True)
class ReplyTranscript:
    """The agent's reply as spoken so far (``final`` once its last chunk has played)."""

    turn_id: int
    text: str
    final: bool


@dataclass(frozen=True)
class ReplyResumed:
    """A backchannel or a blip: the paused reply carries on."""

    turn_id: int


@dataclass(frozen=True)
class ReplyInterrupted:
    """The reply stopped for good; ``heard_text`` is what was heard of it ("" when it is withdrawn unheard)."""

    turn_id: int
    heard_text: str


@dataclass(frozen=True)
class TurnLatency:
    """The per-stage figures of one turn, in ms (see ``TurnTimer.as_metrics``)."""

    turn_id: int
    metrics: dict[str, float | None]


@dataclass(frozen=True)
class AgentFailure:
    """Something failed for this call (a model, the listener); ``code`` is the typed error code."""

    code: str
    message: str


AgentEvent = Union[StateChanged, CallerTranscript, ReplyTranscript, ReplyResumed, ReplyInterrupted, TurnLatency, AgentFailure]
