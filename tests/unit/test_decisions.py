"""``Decisions``: utterances decided in the order they ended; whether a speaker went on meanwhile."""

from __future__ import annotations

import asyncio
import time

from parley.agents.decisions import Decisions


async def test_decisions_run_one_after_another_in_the_order_the_utterances_ended():
    decisions, order = Decisions(), []
    first_may_end = asyncio.Event()

    async def first() -> None:
        order.append("first began")
        await first_may_end.wait()
        order.append("first ended")

    async def second() -> None:
        order.append("second began")

    decisions.start("ann", first)
    last = decisions.start("bob", second)
    await asyncio.sleep(0.05)
    assert order == ["first began"] and decisions.deciding
    assert decisions.undecided("ann") == 1 and decisions.undecided("bob") == 1
    first_may_end.set()
    await last
    assert order == ["first began", "first ended", "second began"]
    assert not decisions.deciding and decisions.tasks == []


async def test_a_cancelled_decision_lets_the_next_one_run():
    decisions, ran = Decisions(), []

    async def forever() -> None:
        await asyncio.sleep(30)

    async def next_one() -> None:
        ran.append(True)

    stuck = decisions.start("ann", forever)
    after = decisions.start("ann", next_one)
    await asyncio.sleep(0)
    stuck.cancel()
    await asyncio.wait_for(after, 2)
    assert ran == [True]


async def test_went_on_is_true_once_the_speaker_speaks_again_within_the_time():
    decisions = Decisions()
    gate = asyncio.Event()
    decisions.start("ann", gate.wait)
    asyncio.get_running_loop().call_later(0.05, decisions.spoke, "ann")
    started = time.monotonic()
    assert await decisions.went_on("ann", time.monotonic(), 2.0)
    assert time.monotonic() - started < 1.0  # answered at the onset, not at the end of the wait
    gate.set()


async def test_went_on_is_false_after_the_time_without_speech_and_someone_else_does_not_count():
    decisions = Decisions()
    gate = asyncio.Event()
    decisions.start("ann", gate.wait)
    decisions.spoke("bob")
    started = time.monotonic()
    assert not await decisions.went_on("ann", time.monotonic(), 0.15)
    assert time.monotonic() - started >= 0.14
    gate.set()


async def test_went_on_stops_waiting_when_until_has_an_answer_but_not_for_none():
    decisions = Decisions()
    gate = asyncio.Event()
    decisions.start("ann", gate.wait)

    async def after(delay: float, value: str | None) -> str | None:
        await asyncio.sleep(delay)
        return value

    started = time.monotonic()
    assert not await decisions.went_on("ann", time.monotonic(), 2.0, until=asyncio.create_task(after(0.05, "other words")))
    assert time.monotonic() - started < 1.0
    started = time.monotonic()
    assert not await decisions.went_on("ann", time.monotonic(), 0.3, until=asyncio.create_task(after(0.05, None)))
    assert time.monotonic() - started >= 0.29  # no answer: the whole wait
    gate.set()


async def test_a_later_utterance_of_theirs_already_ended_counts_as_going_on():
    decisions = Decisions()
    gate = asyncio.Event()
    decisions.start("ann", gate.wait)
    decisions.start("ann", gate.wait)  # (clears "spoke again": the event alone would say no)
    assert await decisions.went_on("ann", time.monotonic(), 0.01)
    gate.set()
