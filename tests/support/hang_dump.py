"""Before pytest-timeout kills a hung test, print what every asyncio task is waiting on.

pytest-timeout dumps threads, and a hung asyncio test shows only its event loop idling in ``select``:
the coroutine that never finishes is invisible. A few seconds before the test's timeout, this prints
each pending task's stack, so a hang that happens once in CI says where it was.
"""

from __future__ import annotations

import asyncio
import gc
import io
import sys
import threading
import types

import pytest

DUMP_BEFORE_TIMEOUT_S = 15.0
MAX_DEPTH = 40


def timeout_of(item: pytest.Item) -> float | None:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    try:
        configured = item.config.getini("timeout")
    except ValueError:  # pytest-timeout is not installed
        return None
    return float(configured) if configured else None


def pending_tasks() -> list[asyncio.Task]:  # type: ignore[type-arg]
    """Every pending task of every loop in this process (asyncio's own registry, read from another thread)."""
    registry = getattr(asyncio.tasks, "_all_tasks", ())
    for _ in range(3):  # the set may change while it is copied
        try:
            return [task for task in list(registry) if not task.done()]
        except RuntimeError:
            continue
    return []


def await_chain(task: asyncio.Task) -> list[str]:  # type: ignore[type-arg]
    """Where the task's coroutine is suspended, outermost first, down the chain of awaits."""
    return chain_from(task.get_coro())


def suspended_async_generators() -> list[types.AsyncGeneratorType]:  # type: ignore[type-arg]
    """Async generators stopped inside an await (an ``asynccontextmanager``'s exit, for one): a task's
    chain ends at their ``async_generator_asend``, which does not say which generator it drives."""
    return [o for o in gc.get_objects() if isinstance(o, types.AsyncGeneratorType) and o.ag_await is not None]


def chain_from(awaited: object) -> list[str]:
    """The frames of ``awaited`` (a coroutine, generator or async generator) and of what it awaits in turn."""
    lines = []
    for _ in range(MAX_DEPTH):
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None) or getattr(awaited, "ag_frame", None)
        if frame is None:
            lines.append(f"  awaiting {awaited!r}"[:300])
            break
        lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None) or getattr(awaited, "ag_await", None)
        if awaited is None:
            break
    return lines


def task_stacks() -> str:
    out = io.StringIO()
    tasks = pending_tasks()
    out.write(f"\n{'~' * 20} {len(tasks)} pending asyncio task(s) {'~' * 20}\n")
    for task in tasks:
        out.write(f"--- {task.get_name()}\n")
        try:
            out.write("\n".join(await_chain(task)) + "\n")
        except Exception as exc:  # a frame changing under us: say so, go on
            out.write(f"  (unreadable: {exc!r})\n")
    try:
        generators = suspended_async_generators()
    except Exception as exc:
        generators = []
        out.write(f"(async generators unreadable: {exc!r})\n")
    for generator in generators:
        out.write(f"--- async generator {generator.ag_code.co_qualname}\n")
        try:
            out.write("\n".join(chain_from(generator)) + "\n")
        except Exception as exc:
            out.write(f"  (unreadable: {exc!r})\n")
    return out.getvalue()


def arm(item: pytest.Item) -> threading.Timer | None:
    """Print the task stacks DUMP_BEFORE_TIMEOUT_S before the item's timeout, if it is still running then."""
    timeout = timeout_of(item)
    if not timeout or timeout <= DUMP_BEFORE_TIMEOUT_S * 2:
        return None
    timer = threading.Timer(timeout - DUMP_BEFORE_TIMEOUT_S, lambda: print(
        f"\n{item.nodeid} is still running {timeout - DUMP_BEFORE_TIMEOUT_S:g} s in:" + task_stacks(), file=sys.stdout, flush=True,
    ))
    timer.daemon = True
    timer.start()
    return timer
