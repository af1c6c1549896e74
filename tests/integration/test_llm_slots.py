"""Each call's requests stay in its own slot of the embedded llama.cpp server (``agents/llm/slots.py``):
a sentence-end judgement asked while the call's reply is being written waits for that slot instead of
landing in an empty one, where it would evaluate the whole conversation anew (7.4 s in make bench)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from parley.agents.llm.base import ChatMessage
from parley.agents.llm.embedded import EmbeddedLlm
from parley.agents.weights import llm_model_path

pytestmark = pytest.mark.slow
ASKED = [
    ChatMessage(role="system", content="You are a helpful voice assistant. Answer in two or three sentences."),
    ChatMessage(role="user", content="Tell me about lighthouses."),
]


def _going_on(words: str) -> list[ChatMessage]:
    return [*ASKED[:-1], ChatMessage(role="user", content=words)]


async def _slots_used(llm: EmbeddedLlm) -> set[int]:
    """The server's slots that have run a request (llama.cpp's ``/slots``)."""
    async with aiohttp.ClientSession() as http, http.get(f"{llm.base_url.removesuffix('/v1')}/slots") as resp:
        return {slot["id"] for slot in await resp.json() if "id_task" in slot}


async def _judged_while_writing(llm: EmbeddedLlm, pinned: bool, words: str) -> float | None:
    """A reply to ``ASKED`` is being written when the caller's longer question, ``words``, is judged."""
    call = llm.pinned() if pinned else llm
    assert call is not None
    first = asyncio.Event()

    async def write() -> None:
        async for _ in call.stream(ASKED):
            first.set()

    writing = asyncio.create_task(write())
    await asyncio.wait_for(first.wait(), 60)
    judged = await call.sentence_end_probability(_going_on(words), words)
    await writing
    return judged


async def test_a_judgement_asked_while_the_calls_reply_is_written_waits_for_the_calls_slot(settings):
    path = await asyncio.to_thread(llm_model_path, settings.llm.model, settings.cache_dir, print)
    llm = await EmbeddedLlm.start(path, log_dir=settings.cache_dir / "logs", threads=2, parallel=2, max_tokens=24, temperature=0.0)
    try:
        judged = await _judged_while_writing(llm, True, "Tell me about lighthouses and the people who kept them")
        assert judged is not None and 0.0 <= judged <= 1.0
        assert await _slots_used(llm) == {0}  # the reply and the judgement, one slot
        await _judged_while_writing(llm, False, "Tell me about lighthouses and the ships they")  # without the lease, the server put it beside the reply
        assert await _slots_used(llm) == {0, 1}
    finally:
        await llm.close()


async def test_slots_go_to_calls_warm_ones_first_and_none_when_all_are_held():
    from parley.agents.llm.slots import SlotLeases

    leases = SlotLeases(3)
    leases.warmed(2)
    assert leases.lease() == 2  # its cache holds the system prompt
    assert leases.lease() == 0 and leases.lease() == 1 and leases.lease() is None
    leases.release(1)
    leases.release(0)
    assert leases.lease() == 0  # used before: warm, and the lowest
    assert leases.free == 1
