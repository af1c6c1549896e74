"""``ChildPause``: stop a child process for a while (SIGSTOP), so that its cores go to other work.

The embedded LLM runs in a child process on the same cores as the voice. While a slow voice (Kokoro,
Mandarin: ~0.45× real time on two cores alone) synthesizes a reply's first words, the LLM writing the
rest of that reply takes half the CPU from it, and the caller waits longer for the first sound
(probes 2026-12-06: Kokoro's first audio ~1.1–1.3 s beside the LLM, ~0.7 s with the LLM stopped).
The rest of the reply is wanted only once the first words play, so the child is stopped meanwhile.

A pause always ends: when its ``with`` block exits (cancelled or not), or after ``max_s`` at the latest.
One pause at a time; POSIX only (elsewhere it does nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Iterator

log = logging.getLogger(__name__)
MAX_PAUSE_S = 3.0  # the longest a child stays stopped, whatever its holder does


class ChildPause:
    """Pauses of one child process (whose pid may change as it is restarted)."""

    def __init__(self, max_s: float = MAX_PAUSE_S) -> None:
        self._max_s = max_s
        self._stopped: int | None = None  # the pid stopped now
        self._timer: asyncio.TimerHandle | None = None

    @property
    def active(self) -> bool:
        return self._stopped is not None

    @contextlib.contextmanager
    def paused(self, pid: int | None) -> Iterator[bool]:
        """Stop ``pid`` for the ``with`` block (yields whether it was stopped: not when ``pid`` is None,
        another pause is on, or signals are not available)."""
        stopped = self._stop(pid)
        try:
            yield stopped
        finally:
            if stopped and pid is not None:
                self.resume(pid)

    def _stop(self, pid: int | None) -> bool:
        if pid is None or self._stopped is not None or not hasattr(signal, "SIGSTOP"):
            return False
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            return False
        self._stopped = pid
        self._timer = asyncio.get_running_loop().call_later(self._max_s, self._overdue, pid)
        return True

    def _overdue(self, pid: int) -> None:
        log.warning("the LLM child (pid %d) was stopped for %g s: resumed", pid, self._max_s)
        self.resume(pid)

    def resume(self, pid: int | None = None) -> None:
        """Let the stopped child (``pid``, or whichever) run again; nothing if it is not stopped."""
        if self._stopped is None or (pid is not None and pid != self._stopped):
            return
        stopped, self._stopped = self._stopped, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with contextlib.suppress(ProcessLookupError):
            os.kill(stopped, signal.SIGCONT)
