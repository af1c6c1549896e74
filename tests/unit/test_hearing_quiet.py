"""The pass at a pause runs with the call's competing LLM work stopped (``Hearing``'s ``quiet``); interim
passes do not: nothing waits for them. The speech model here is a stand-in for the logic around it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import warnings
from types import SimpleNamespace
from typing import Iterator

import numpy as np

from parley.agents.hearing import Hearing
from parley.agents.speculation import HeldWords
from parley.agents.stage_timer import EarlyTranscriptionStats


def _hearing(events: list[str]) -> Hearing:
    @contextlib.contextmanager
    def quiet() -> Iterator[bool]:
        events.append("llm stopped")
        try:
            yield True
        finally:
            events.append("llm going on")

    async def transcribe_after(samples: np.ndarray, settled: object, doubting: bool = False) -> str:
        speech.doubting = doubting  # (a pass the turn waits for: an unsure transcript is heard again at once)
        events.append("pass starts")
        await asyncio.sleep(0.01)
        events.append("pass ends")
        return "what is the time"

    speech = SimpleNamespace(transcribe_after=transcribe_after)
    return Hearing(speech, EarlyTranscriptionStats(), logging.getLogger("test"), quiet=quiet)  # type: ignore[arg-type]


async def test_the_pass_at_a_pause_runs_inside_quiet_and_only_that_long():
    events: list[str] = []
    hearing = _hearing(events)
    done = asyncio.Event()

    async def whole(part: object) -> tuple[np.ndarray, str]:
        raise AssertionError("no words were held")

    hearing.at_pause("caller", 1, np.zeros(16_000, np.float32), None, whole, lambda early: done.set())
    await asyncio.wait_for(done.wait(), 5)
    assert events == ["llm stopped", "pass starts", "pass ends", "llm going on"]
    early = hearing.current("caller")
    assert early is not None and await early.task == "what is the time"
    assert hearing._speech.doubting  # type: ignore[attr-defined]


async def test_the_pass_hearing_held_words_and_their_continuation_as_one_runs_inside_quiet():
    events: list[str] = []
    hearing = _hearing(events)

    async def whole(part: object) -> tuple[np.ndarray, str]:
        events.append("whole pass")
        await asyncio.sleep(0.01)
        return np.zeros(1, np.float32), "what is the capital of France"

    held = HeldWords("what is the capital of", 1, np.zeros(8_000, np.float32))
    hearing.at_pause("caller", 2, np.zeros(16_000, np.float32), held, whole, lambda early: None)
    early = hearing.current("caller")
    assert early is not None and early.whole is not None
    _, text = await asyncio.wait_for(early.whole.task, 5)
    assert text == "what is the capital of France"
    assert events == ["llm stopped", "whole pass", "llm going on"]  # the part alone was not needed
    early.whole.part.task.cancel()


async def test_an_interim_pass_leaves_the_llm_alone():
    events: list[str] = []
    hearing = _hearing(events)
    heard: list[str] = []
    hearing.interim("caller", np.zeros(16_000, np.float32), heard.append)
    while not heard:
        await asyncio.sleep(0.005)
    assert events == ["pass starts", "pass ends"] and heard == ["what is the time"]
    assert not hearing._speech.doubting  # type: ignore[attr-defined]  # (an interim transcript is not heard again)


async def test_passes_cancelled_before_they_run_leave_no_coroutine_never_awaited():
    events: list[str] = []
    hearing = _hearing(events)

    async def whole(part: object) -> tuple[np.ndarray, str]:
        events.append("whole pass")
        return np.zeros(1, np.float32), "never heard"

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        held = HeldWords("what is the capital of", 1, np.zeros(8_000, np.float32))
        hearing.at_pause("caller", 2, np.zeros(16_000, np.float32), held, whole, lambda early: None)
        early = hearing.current("caller")
        assert early is not None and early.whole is not None
        tasks = [early.whole.task, early.whole.part.task]
        hearing.at_pause("other", 3, np.zeros(16_000, np.float32), None, whole, lambda early: None)
        other = hearing.current("other")
        assert other is not None
        tasks.append(other.task)
        for task in tasks:
            task.cancel()  # (a caller going on before the passes even started)
        await asyncio.gather(*tasks, return_exceptions=True)
        hearing.close()
        del tasks, early, other  # the last references to the cancelled passes: their coroutines go now
        for _ in range(3):
            await asyncio.sleep(0)  # (the loop lets go of the tasks once their done callbacks ran)
        gc.collect()
    assert events == []
    assert not [w for w in caught if "never awaited" in str(w.message)], [str(w.message) for w in caught]


async def test_held_words_are_heard_again_inside_quiet_and_counted_only_where_there_is_a_larger_ear():
    events: list[str] = []
    hearing = _hearing(events)

    async def hear_again(samples: np.ndarray, text: str | None = None) -> str:
        events.append("larger ear")
        return " Why is the ocean salty? "

    hearing._speech.hears_again, hearing._speech.hear_again = True, hear_again  # type: ignore[attr-defined]
    assert await hearing.again(np.zeros(16_000, np.float32)) == "Why is the ocean salty?"
    assert events == ["llm stopped", "larger ear", "llm going on"]
    hearing.heard_whole_again()
    assert hearing._stats.as_dict()["heard_again"] == 1 and hearing._stats.as_dict()["heard_whole_again"] == 1
    events.clear()
    hearing._speech.hears_again = False  # type: ignore[attr-defined]
    assert await hearing.again(np.zeros(16_000, np.float32)) == ""
    assert events == [] and hearing._stats.as_dict()["heard_again"] == 1  # no pass, the LLM not stopped
