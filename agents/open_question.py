"""``OpenQuestions``: the question each caller is still asking, and the prompt it would make.

A question stays open across utterances in two ways: words that read as cut short ("What is the
capital of?") are *held* to be heard with what the caller says next, and a question whose reply nobody
has heard yet (no sound, or the caller began as it did) takes the caller's next words as its
continuation — they fold into it. Interim transcripts, sentence-end judgements, primes and
speculative replies all work on the question so far, on the line that shows it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from parley.agents.caller_lines import CallerLines
from parley.agents.conversation import Conversation
from parley.agents.llm.base import ChatMessage
from parley.agents.profile import AgentProfile, Speaker
from parley.agents.reply_turn import Turn
from parley.agents.speculation import HeldWords
from parley.agents.text import join_said


class OpenQuestions:
    """Per caller of one call: the words held back as unfinished, and the turn their next words fold into.

    ``current`` reads the call's current turn; ``lines`` are its callers' transcript lines."""

    def __init__(
        self, current: Callable[[], Turn | None], conversation: Conversation, profile: AgentProfile,
        people: Callable[[], int], lines: CallerLines,
    ) -> None:
        self._current = current
        self._conversation = conversation
        self._profile = profile
        self._people = people
        self._lines = lines
        self._held: dict[str, HeldWords] = {}

    def held(self, speaker_id: str) -> HeldWords | None:
        """The words ``speaker_id`` said that read as cut short, waiting for the rest (``None``: none)."""
        return self._held.get(speaker_id)

    def take_held(self, speaker_id: str) -> HeldWords | None:
        """The held words, no longer held: they are being heard with what came after them."""
        return self._held.pop(speaker_id, None)

    def hold(self, speaker: Speaker, text: str, line: int, samples: np.ndarray) -> None:
        """Hold ``text`` (and its audio) to be heard with what ``speaker`` says next, on ``line`` — or on the
        line of the question whose reply nobody has heard yet, which shows these words already."""
        unheard = self.unheard_turn_of(speaker)
        self._held[speaker.participant_id] = HeldWords(text, unheard.utterance_id if unheard is not None else line, samples)

    def unheard_turn_of(self, speaker: Speaker) -> Turn | None:
        """The turn answering ``speaker`` whose reply nobody has heard yet (their new words fold into it)."""
        current = self._current()
        if current is not None and current.active and current.unheard and current.speaker == speaker:
            return current
        return None

    def so_far(self, speaker: Speaker, text: str, held: bool = True) -> str:
        """The question ``speaker`` would have asked if their turn ended on ``text`` now: after the words
        held as unfinished before it (unless ``text`` already has them: not ``held``), and after the
        question whose reply nobody has heard yet (what it folds into)."""
        carried = self._held.get(speaker.participant_id) if held else None
        if carried is not None:
            text = after_held(carried.text, text)
        current = self.unheard_turn_of(speaker)
        return join_said(current.user_text, text) if current is not None else text

    def interim_line(self, speaker: Speaker, text: str) -> tuple[int, str]:
        """Where an interim transcript ``text`` goes, and what that line shows: a caller going on after words
        held as unfinished, or after a question whose reply nobody has heard yet, continues that question's
        line (as its final will)."""
        carried = self._held.get(speaker.participant_id)
        current = self.unheard_turn_of(speaker)
        if current is not None:
            self._lines.borrow(current.utterance_id)
        if carried is not None:
            line = carried.line
        else:
            line = current.utterance_id if current is not None else self._lines.current(speaker.participant_id)
        return line, self.so_far(speaker, text)

    def prompt_if_asked(self, text: str, speaker: Speaker) -> list[ChatMessage]:
        """The prompt a turn would send if ``speaker`` asked ``text`` now (what speculation and priming send).
        A question whose reply nobody has heard is not in it: ``text`` continues it (``so_far``)."""
        group = self._profile.group_mode(self._people())
        unheard = self.unheard_turn_of(speaker)
        asked = Conversation.user_message(text, speaker, group)
        return self._conversation.prompt_if_asked(
            asked, unheard.user_message if unheard is not None else None, group, self._profile.language_of(text),
        )


def after_held(held: str, text: str) -> str:
    """Words held as unfinished ("What is the capital of?") and what the caller went on to say."""
    held = held.rstrip('?.!？。！').strip()
    return join_said(held, text) if held else text
