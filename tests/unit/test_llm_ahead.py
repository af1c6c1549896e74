"""``LlmAhead``: one priming request at a time, replies asked after it, and the speculative reply kept,
handed over or thrown away by its pause and speaker (a fake LLM: this is the logic around the model)."""

from __future__ import annotations

import asyncio

from parley.agents.llm.base import ChatMessage
from parley.agents.llm_ahead import LlmAhead
from parley.agents.stage_timer import SpeculationStats


class OrderedLlm:
    """Records when each request starts and ends; a prime takes ``prime_s``."""

    def __init__(self, prime_s: float = 0.05) -> None:
        self.log: list[str] = []
        self.prime_s = prime_s

    async def prime(self, messages: list[ChatMessage], words: str | None = None) -> None:
        self.log.append(f"prime {words}")
        await asyncio.sleep(self.prime_s)
        self.log.append("primed")

    async def stream(self, messages: list[ChatMessage]):
        self.log.append(f"reply to {messages[-1].content}")
        for word in ("Paris", "."):
            await asyncio.sleep(0.01)
            yield word


def _ask(words: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=words)]


def _ahead(llm: OrderedLlm, stats: SpeculationStats | None = None) -> LlmAhead:
    return LlmAhead(llm, stats or SpeculationStats(), threshold=0.02, min_words=3)  # type: ignore[arg-type]


async def test_one_prime_at_a_time_and_a_reply_asked_after_it():
    llm = OrderedLlm()
    ahead = _ahead(llm)
    assert ahead.prime(lambda: _ask("What is"), "What is")
    assert not ahead.prime(lambda: _ask("What is the"), "What is the")  # the first is still in the LLM
    reply = "".join([d async for d in ahead.stream(_ask("What is the capital of France?"))])
    assert reply == "Paris."
    assert llm.log[:3] == ["prime What is", "primed", "reply to What is the capital of France?"]
    assert ahead.prime(lambda: _ask("Next"), "Next")
    await ahead.close()


async def test_the_speculative_reply_goes_to_the_turn_of_its_own_pause_and_speaker_only():
    stats = SpeculationStats()
    ahead = _ahead(OrderedLlm(), stats)
    ahead.speculate(3, "ada", "What is the capital of France?", _ask("What is the capital of France?"))
    assert ahead.take("ada", 2) is None and ahead.take("bob", 3) is None
    ahead.cancel_unless("ada", 3, "the turn ended elsewhere")  # its own pause: kept
    ahead.cancel("bob", None, "someone else went on")  # not theirs: kept
    spec = ahead.take("ada", 3)
    assert spec is not None and "".join([d async for d in spec.adopt()]) == "Paris."
    assert ahead.take("ada", 3) is None  # handed over once
    ahead.speculate(4, "ada", "And of Spain?", _ask("And of Spain?"))
    ahead.cancel_unless("ada", 5, "the turn ended elsewhere")
    assert ahead.take("ada", 4) is None
    assert (stats.started, stats.used, stats.cancelled) == (2, 1, 1)
    await ahead.close()


async def test_closing_cancels_the_speculative_reply_and_the_prime_in_flight():
    stats = SpeculationStats()
    llm = OrderedLlm(prime_s=10.0)
    ahead = _ahead(llm, stats)
    assert ahead.prime(lambda: _ask("Tell me"), "Tell me")
    ahead.speculate(1, "ada", "Tell me a joke.", _ask("Tell me a joke."))
    await asyncio.sleep(0)
    await asyncio.wait_for(ahead.close(), 1.0)
    assert stats.cancelled == 1 and "primed" not in llm.log
    assert not ahead.prime(lambda: _ask("More"), "More")  # nothing starts once closed


async def test_a_calls_requests_go_through_its_slot_of_the_llm_which_it_gives_back_at_the_end():
    from parley.agents.llm.slots import SlotLeases

    class SlottedLlm(OrderedLlm):
        """Like the embedded LLM: ``pinned`` leases a slot and every request says which."""

        def __init__(self) -> None:
            super().__init__()
            self.slots = SlotLeases(1)

        def pinned(self):
            slot = self.slots.lease()
            if slot is None:
                return None
            llm, slots = self, self.slots

            class Pinned:
                async def prime(self, messages, words=None):
                    llm.log.append(f"slot {slot}")
                    await llm.prime(messages, words)

                def stream(self, messages):
                    llm.log.append(f"slot {slot}")
                    return llm.stream(messages)

                def release(self):
                    slots.release(slot)

            return Pinned()

    llm = SlottedLlm()
    first, second = _ahead(llm), _ahead(llm)  # one slot: the second call goes wherever the server puts it
    assert "".join([d async for d in first.stream(_ask("Hi"))]) == "Paris."
    assert "".join([d async for d in second.stream(_ask("Hello"))]) == "Paris."
    assert llm.log == ["slot 0", "reply to Hi", "reply to Hello"]
    await first.close()
    assert llm.slots.free == 1
    third = _ahead(llm)
    assert llm.slots.free == 0  # the next call has it
    await second.close()
    await third.close()
