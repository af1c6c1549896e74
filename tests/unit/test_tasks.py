"""``cancel_and_wait``: a background task is ended even when it swallows a cancel."""

from __future__ import annotations

import asyncio
import sys
import time

from parley.core.tasks import cancel_and_wait


async def test_a_loop_that_swallows_a_cancel_in_wait_for_is_ended():
    """The hang seen once in CI (a cluster node's heartbeat that never stopped), on purpose: the cancel
    lands in the loop turn in which the loop's ``wait_for`` gets its result."""
    loop = asyncio.get_running_loop()
    replies = [loop.create_future(), loop.create_future()]
    rounds = 0

    async def reply(index: int) -> object:
        return await replies[index]

    async def heartbeat() -> None:
        nonlocal rounds
        while True:
            await asyncio.wait_for(reply(min(rounds, 1)), 30)
            rounds += 1

    task = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.01)
    replies[0].set_result("ok")  # the reply comes in ...
    started = time.monotonic()
    await cancel_and_wait(task, recancel_s=0.05)  # ... in the same turn as the cancel
    assert task.cancelled()
    assert time.monotonic() - started < 5
    if sys.version_info < (3, 12):
        assert rounds == 1  # the first cancel was swallowed: the loop went round once more


async def test_a_failed_or_finished_task_is_returned_from_at_once_without_raising():
    async def fails() -> None:
        raise RuntimeError("boom")

    failed = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await cancel_and_wait(failed)
    assert isinstance(failed.exception(), RuntimeError)

    async def finishes() -> int:
        return 7

    finished = asyncio.create_task(finishes())
    await asyncio.sleep(0)
    await cancel_and_wait(finished)
    assert finished.result() == 7


async def test_a_task_that_ends_on_cancel_is_waited_for_to_its_end():
    cleaned = asyncio.Event()

    async def cleans_up() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0.05)
            cleaned.set()

    task = asyncio.create_task(cleans_up())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert cleaned.is_set() and task.cancelled()
