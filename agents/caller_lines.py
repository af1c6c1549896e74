"""``CallerLines``: which line of the live transcript each caller's words are shown on.

A line is one utterance (``utterance_id`` on the wire): interim transcripts update it, its final closes
it, and whatever the caller says next opens a new one. A continuation may be shown on an earlier
question's line (words held as unfinished, or a question whose reply nobody has heard yet): such a line
is *borrowed* until the continuation is decided, and given back if it turns out to be a new question.
"""

from __future__ import annotations


class CallerLines:
    """Line ids for one call's callers, in order, one open line per speaker."""

    def __init__(self) -> None:
        self._last = 0
        self._open: dict[str, int] = {}  # per speaker: the line their current speech is shown on
        self._borrowed: set[int] = set()

    def new(self) -> int:
        """A line nobody has used yet."""
        self._last += 1
        return self._last

    def current(self, speaker_id: str) -> int:
        """The line ``speaker_id``'s current speech is shown on (a new one after their last ``close``)."""
        if speaker_id not in self._open:
            self._open[speaker_id] = self.new()
        return self._open[speaker_id]

    def close(self, speaker_id: str) -> int:
        """The utterance on the speaker's current line has ended: its line; what they say next opens another."""
        line = self.current(speaker_id)
        del self._open[speaker_id]
        return line

    def borrow(self, line: int) -> None:
        """An interim continuation is shown on ``line``, an earlier question's."""
        self._borrowed.add(line)

    def give_back(self, line: int) -> bool:
        """The continuation shown on ``line`` is decided: whether the line had been borrowed."""
        borrowed = line in self._borrowed
        self._borrowed.discard(line)
        return borrowed
