"""``Decisions``: the order in which one call's finished utterances are decided, and whether each
speaker spoke again after theirs — what the turn controller (``AgentSession``) waits on while it decides."""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable


class Decisions:
    """Each finished utterance is decided in a task of its own, one after another in the order they ended;
    meanwhile a speaker's next onset says they went on (``went_on``)."""

    def __init__(self) -> None:
        self._spoke_again: dict[str, asyncio.Event] = {}
        self._latest: asyncio.Task[None] | None = None
        self._in_flight: dict[asyncio.Task[None], str] = {}  # every decision not done, with whose utterance it is

    def spoke(self, speaker_id: str) -> None:
        """``speaker_id`` began to speak (again)."""
        self._event(speaker_id).set()

    def start(self, speaker_id: str, decide: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Decide ``speaker_id``'s utterance that has just ended (``decide()``), once the decisions before it are
        done; from now on, what they say next is speaking again."""
        self._event(speaker_id).clear()
        task = asyncio.create_task(self._after(self._latest, decide))
        self._latest = task
        self._in_flight[task] = speaker_id
        task.add_done_callback(lambda done: self._in_flight.pop(done, None))
        return task

    @property
    def deciding(self) -> bool:
        """Whether an utterance is being decided."""
        return bool(self._in_flight)

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The decisions in flight (to cancel when the call closes)."""
        return list(self._in_flight)

    def undecided(self, speaker_id: str) -> int:
        """How many of ``speaker_id``'s utterances are still being decided (the one deciding now included)."""
        return sum(1 for pid in self._in_flight.values() if pid == speaker_id)

    async def went_on(
        self, speaker_id: str, speech_end_at: float, within_s: float, until: asyncio.Task[str | None] | None = None,
    ) -> bool:
        """Whether ``speaker_id`` speaks again within ``within_s`` of ``speech_end_at`` (the end of the speech of
        the utterance being decided), waiting for the rest of that time if they have not yet — or until
        ``until`` has an answer (a result other than ``None``)."""
        spoke = self._event(speaker_id)
        if self.undecided(speaker_id) > 1:  # a later utterance of theirs has ended already (and cleared the event)
            return True
        deadline = speech_end_at + within_s
        waiting = asyncio.ensure_future(spoke.wait())
        others = {until} if until is not None else set()
        try:
            while not spoke.is_set() and (left := deadline - time.monotonic()) > 0:
                done, _ = await asyncio.wait({waiting, *others}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                if until in done:
                    others.clear()
                    if answer(until) is not None:
                        break
        finally:
            waiting.cancel()
        return spoke.is_set()

    def _event(self, speaker_id: str) -> asyncio.Event:
        return self._spoke_again.setdefault(speaker_id, asyncio.Event())

    @staticmethod
    async def _after(previous: asyncio.Task[None] | None, decide: Callable[[], Awaitable[None]]) -> None:
        if previous is not None and not previous.done():
            # asyncio.wait, unlike awaiting the task, lets our own cancellation through (the session
            # closing) instead of swallowing it with the previous one's.
            await asyncio.wait({previous})
        await decide()


def answer(task: asyncio.Task[str | None]) -> str | None:
    """What ``task`` returned, if it has ended and ended well; else ``None``."""
    return task.result() if task.done() and not task.cancelled() and task.exception() is None else None
