"""Ending background tasks for sure."""

from __future__ import annotations

import asyncio
from typing import Any

RECANCEL_S = 0.5


async def cancel_and_wait(task: asyncio.Task[Any], recancel_s: float = RECANCEL_S) -> None:
    """Cancel ``task`` and return once it has ended, cancelling it again for as long as it runs on.

    One cancel is not always enough on Python 3.11: ``asyncio.wait_for`` drops a cancellation that
    arrives in the loop turn in which its inner awaitable finishes (fixed in 3.12), so a loop that awaits
    ``wait_for`` — its own, or a library's such as redis-py's socket writes — can swallow the cancel and
    go round again, and ``task.cancel(); await task`` then waits for ever. The task's own outcome
    (result, exception or cancellation) is not raised here. A task whose clean-up on cancel takes longer
    than ``recancel_s`` is cancelled again inside it: meant for loops that have nothing to clean up.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=recancel_s)
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved
