"""The agent's turn-taking state machine, in one place: every transition is declared, logged and emitted."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Callable


class State(StrEnum):
    LISTENING = "listening"  # idle, waiting for the caller
    USER_SPEAKING = "user_speaking"  # the caller is talking, no agent turn pending
    THINKING = "thinking"  # transcribing / generating, nothing played yet
    SPEAKING = "speaking"  # the agent's audio is playing
    PAUSED = "paused"  # the caller started talking over a pending or playing reply: held until we know why


class Event(StrEnum):
    SPEECH_START = "speech_start"
    SPEECH_DISCARDED = "speech_discarded"  # a blip: too short to be speech
    UTTERANCE = "utterance"  # the caller finished an utterance
    NO_WORDS = "no_words"  # it transcribed to nothing
    AUDIO_STARTED = "audio_started"  # the reply's first frame went out
    REPLY_DONE = "reply_done"  # the reply's last frame went out
    RESUME_SPEAKING = "resume_speaking"  # a backchannel or blip: carry on where we paused
    RESUME_THINKING = "resume_thinking"  # same, but no audio had been played yet
    BARGE_IN = "barge_in"  # real words: the reply is cut, the caller has the floor
    FAILED = "failed"  # the turn failed (its error is sent separately)
    CANCELLED = "cancelled"  # the turn was dropped for a newer utterance


S, E = State, Event
TRANSITIONS: dict[tuple[State, Event], State] = {
    (S.LISTENING, E.SPEECH_START): S.USER_SPEAKING,
    (S.LISTENING, E.UTTERANCE): S.THINKING,
    (S.USER_SPEAKING, E.SPEECH_DISCARDED): S.LISTENING,
    (S.USER_SPEAKING, E.UTTERANCE): S.THINKING,
    (S.USER_SPEAKING, E.NO_WORDS): S.LISTENING,
    (S.THINKING, E.NO_WORDS): S.LISTENING,
    (S.THINKING, E.AUDIO_STARTED): S.SPEAKING,
    (S.THINKING, E.SPEECH_START): S.PAUSED,
    (S.THINKING, E.FAILED): S.LISTENING,
    (S.THINKING, E.CANCELLED): S.USER_SPEAKING,  # dropped for the caller's newer utterance
    (S.THINKING, E.REPLY_DONE): S.LISTENING,
    (S.SPEAKING, E.REPLY_DONE): S.LISTENING,
    (S.SPEAKING, E.SPEECH_START): S.PAUSED,
    (S.SPEAKING, E.FAILED): S.LISTENING,
    (S.SPEAKING, E.CANCELLED): S.LISTENING,
    (S.PAUSED, E.RESUME_SPEAKING): S.SPEAKING,
    (S.PAUSED, E.RESUME_THINKING): S.THINKING,
    (S.PAUSED, E.BARGE_IN): S.USER_SPEAKING,
    (S.PAUSED, E.FAILED): S.LISTENING,
    (S.PAUSED, E.CANCELLED): S.USER_SPEAKING,
    (S.PAUSED, E.AUDIO_STARTED): S.PAUSED,  # held: the first frame waits for the decision
    (S.PAUSED, E.UTTERANCE): S.PAUSED,  # deciding on the transcript
    (S.USER_SPEAKING, E.BARGE_IN): S.USER_SPEAKING,
}


class TurnStateMachine:
    """Holds the state; ``fire`` applies a declared transition, logs it and reports changes."""

    def __init__(self, on_change: Callable[[State, State, Event], None], log: logging.LoggerAdapter | logging.Logger) -> None:
        self.state = State.LISTENING
        self._on_change = on_change
        self._log = log

    def fire(self, event: Event) -> State:
        """Apply ``event``; an event with no transition from the current state changes nothing."""
        target = TRANSITIONS.get((self.state, event))
        if target is None:
            self._log.debug("state %s ignores %s", self.state, event)
            return self.state
        previous, self.state = self.state, target
        if target != previous:
            self._log.info("state %s -> %s on %s", previous, target, event)
            self._on_change(previous, target, event)
        return target

    def reset(self) -> None:
        """Back to listening (call closing)."""
        self.state = State.LISTENING
