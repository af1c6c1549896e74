"""One call, one slot of the embedded llama.cpp server: every request of a call goes to the same slot.

llama.cpp's server keeps one prompt cache per slot (``--parallel``). A request it cannot give the slot
holding its conversation (busy with this same call's reply) goes to another one and evaluates the whole
conversation there: in ``make bench``, a caller going on while their reply was being written had the
sentence-end judgement of their continuation land in an empty slot — 243 tokens, 7.4 s of prefill that
a cancel cannot stop — and the reply to the whole question waited 4.7 s for its first token. A request
pinned to its call's slot (``id_slot``) waits for that slot instead, and finds its conversation there.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, AsyncIterator

from parley.agents.llm.base import ChatMessage, LlmHealth

if TYPE_CHECKING:
    from parley.agents.llm.embedded import EmbeddedLlm


class SlotLeases:
    """Which of a server's ``count`` slots each call holds. A call gets a free slot that has served a
    call before (its cache holds the system prompt) before one never used; ``None`` when none is free
    (more calls than slots: their requests go wherever the server puts them, as without leases)."""

    def __init__(self, count: int) -> None:
        self._free = set(range(count))
        self._used: set[int] = set()  # slots whose cache holds at least the system prompt

    def lease(self) -> int | None:
        if not self._free:
            return None
        slot = min(self._free, key=lambda s: (s not in self._used, s))
        self._free.discard(slot)
        self._used.add(slot)
        return slot

    def warmed(self, slot: int) -> None:
        """``slot`` was filled without a lease (the server's warm-up)."""
        self._used.add(slot)

    def release(self, slot: int) -> None:
        self._free.add(slot)

    @property
    def free(self) -> int:
        return len(self._free)


class PinnedLlm:
    """The embedded LLM as one call sees it: each request pinned to the call's slot; ``release`` gives the
    slot back (idempotent; the LLM itself stays open — it is the process's)."""

    def __init__(self, llm: "EmbeddedLlm", slot: int, leases: SlotLeases) -> None:
        self._llm, self.slot, self._leases = llm, slot, leases
        self._released = False
        self.name = llm.name

    def stream(self, messages: list[ChatMessage]) -> AsyncIterator[str]:
        return self._llm.stream(messages, slot=self.slot)

    async def prime(self, messages: list[ChatMessage], words: str | None = None) -> None:
        await self._llm.prime(messages, words, slot=self.slot)

    async def sentence_end_probability(self, messages: list[ChatMessage], words: str) -> float | None:
        return await self._llm.sentence_end_probability(messages, words, slot=self.slot)

    def yielding(self) -> contextlib.AbstractContextManager[bool]:
        return self._llm.yielding()

    def stop_yielding(self) -> None:
        self._llm.stop_yielding()

    def yielding_to_transcription(self) -> contextlib.AbstractContextManager[bool]:
        return self._llm.yielding_to_transcription(self.slot)

    async def health(self) -> LlmHealth:
        return await self._llm.health()

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._leases.release(self.slot)
