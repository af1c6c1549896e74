"""The embedded LLM yields its cores to a slow voice: its real child is stopped while one reply is being
written (no token comes meanwhile) and goes on afterwards; with two replies being written (two calls)
nothing is stopped, and a pause ends by itself after its limit."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import AsyncIterator

import pytest

from parley.agents.llm.base import ChatMessage
from parley.agents.llm.child_pause import ChildPause
from parley.agents.llm.embedded import EmbeddedLlm
from parley.agents.weights import llm_model_path

pytestmark = pytest.mark.slow
STORY = [ChatMessage(role="user", content="Tell me a long story about a lighthouse keeper and his cat.")]


def _state(pid: int | None) -> str:
    """The process state letter from /proc (T: stopped)."""
    assert pid is not None
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


async def _shows(pid: int | None, stopped: bool, within_s: float = 2.0) -> bool:
    """Whether ``pid`` shows as stopped (or running) within ``within_s``: a signal takes effect when the
    process is next scheduled, and on a busy machine /proc may say R for a few milliseconds after SIGSTOP."""
    deadline = time.monotonic() + within_s
    while (_state(pid) == "T") != stopped:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


async def _tokens(stream, times: list[float]) -> None:
    async for _ in stream:
        times.append(time.monotonic())


@contextlib.asynccontextmanager
async def _writing_a_story(settings) -> AsyncIterator[tuple[EmbeddedLlm, asyncio.Task[None], list[float]]]:
    """A real embedded LLM writing a long reply (its task, and when each token came), 3 tokens in."""
    path = await asyncio.to_thread(llm_model_path, settings.llm.model, settings.cache_dir, print)
    llm = await EmbeddedLlm.start(path, log_dir=settings.cache_dir / "logs", threads=1, parallel=2, max_tokens=400, temperature=0.0)
    try:
        times: list[float] = []
        writing = asyncio.create_task(_tokens(llm.stream(STORY), times))
        while len(times) < 3:
            await asyncio.sleep(0.01)
        yield llm, writing, times
    finally:
        await llm.close()


async def test_a_stop_for_the_voice_ends_at_once_when_the_caller_speaks(settings):
    async with _writing_a_story(settings) as (llm, writing, times):
        with llm.yielding() as stopped:
            assert stopped and await _shows(llm.pid, stopped=True)
            llm.stop_yielding()  # (the session does this when the caller speaks over the first words)
            assert await _shows(llm.pid, stopped=False)
            came = len(times)
            await asyncio.sleep(0.5)
            assert len(times) > came  # writing again, inside the with block
        writing.cancel()
        await asyncio.gather(writing, return_exceptions=True)


async def test_the_llm_child_is_stopped_while_a_slow_voice_speaks_the_first_words(settings):
    async with _writing_a_story(settings) as (llm, writing, times):
        with llm.yielding() as stopped:
            assert stopped and await _shows(llm.pid, stopped=True)
            held_from = time.monotonic()
            await asyncio.sleep(0.6)
            held_to = time.monotonic()
        assert await _shows(llm.pid, stopped=False)
        came = len(times)
        await asyncio.sleep(0.5)
        assert len(times) > came, "the reply goes on once the voice has its first words"
        # (a token already on its way may land just after the stop: none for the rest of the hold)
        assert not [t for t in times if held_from + 0.2 < t < held_to], [t - held_from for t in times]

        other: list[float] = []
        second = asyncio.create_task(_tokens(llm.stream(STORY), other))
        while not other:
            await asyncio.sleep(0.01)
        assert not writing.done(), "the first reply ended too soon for this check"
        with llm.yielding() as stopped:  # another call's reply is being written: it must not stall
            assert not stopped and _state(llm.pid) != "T"
        for task in (writing, second):
            task.cancel()
        await asyncio.gather(writing, second, return_exceptions=True)
        with llm.yielding() as stopped:  # nothing being written: nothing to stop
            assert not stopped


async def test_a_pause_ends_by_itself_after_its_limit(settings):
    process = await asyncio.create_subprocess_exec("sleep", "30")
    try:
        pause = ChildPause(max_s=0.3)
        with pause.paused(process.pid) as stopped:
            assert stopped and await _shows(process.pid, stopped=True)
            with pause.paused(process.pid) as again:
                assert not again  # one pause at a time
            await asyncio.sleep(0.5)
            assert not pause.active and await _shows(process.pid, stopped=False, within_s=0.5)  # resumed, although the block goes on
        assert _state(process.pid) != "T"
    finally:
        process.kill()
        await process.wait()


async def test_the_llm_child_is_stopped_while_its_own_call_s_pause_is_transcribed(settings):
    """Stopped only while all it does is that call's work; another call's request ends the stop at once."""
    path = await asyncio.to_thread(llm_model_path, settings.llm.model, settings.cache_dir, print)
    llm = await EmbeddedLlm.start(path, log_dir=settings.cache_dir / "logs", threads=1, parallel=2, max_tokens=400, temperature=0.0)
    tasks: list[asyncio.Task[None]] = []
    try:
        with llm.yielding_to_transcription(0) as stopped:
            assert not stopped  # nothing of the call's in the child: nothing to stop
        mine: list[float] = []
        tasks.append(asyncio.create_task(_tokens(llm.stream(STORY, slot=0), mine)))
        while len(mine) < 3:
            await asyncio.sleep(0.01)
        with llm.yielding_to_transcription(1) as stopped:
            assert not stopped and _state(llm.pid) != "T"  # the work in the child is another call's
        with llm.yielding_to_transcription(0) as stopped:
            assert stopped and await _shows(llm.pid, stopped=True)
            came = len(mine)
            await asyncio.sleep(0.4)
            assert len(mine) <= came + 1, "no tokens while stopped (one may have been on its way)"
            theirs: list[float] = []
            tasks.append(asyncio.create_task(_tokens(llm.stream(STORY, slot=1), theirs)))
            assert await _shows(llm.pid, stopped=False), "another call's request must not wait for the stop"
            while not theirs:
                await asyncio.sleep(0.01)
        assert not tasks[0].done(), "the call's own reply was stopped, not ended"
        came = len(mine)
        await asyncio.sleep(0.3)
        assert len(mine) > came
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await llm.close()
