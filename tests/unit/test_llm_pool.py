"""``LlmPool``'s choice of backend for the requests around a reply (the pool against real servers is in
tests/integration/test_llama_cpp_server.py)."""

from __future__ import annotations

from parley.agents.llm.base import ChatMessage
from parley.agents.llm.pool import LlmPool


class RecordingChat:
    """Stands in for one backend's client: records which request reached it."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.base_url, self._log = name, log

    async def prime(self, messages, words=None) -> None:
        self._log.append(f"prime {self.base_url}")

    async def sentence_end_probability(self, messages, words) -> float:
        self._log.append(f"judge {self.base_url}")
        return 0.5

    async def stream(self, messages, max_tokens=None):
        self._log.append(f"reply {self.base_url}")
        yield "Yes."

    async def close(self) -> None:
        pass


async def test_the_prime_and_the_judgement_go_to_the_backend_the_reply_then_uses():
    """Ties between idle backends rotate per reply; priming and judging peek at that rotation instead of
    advancing it, so the reply reads the very cache they filled (and a reply still tries every backend)."""
    log: list[str] = []
    pool = LlmPool([RecordingChat("a", log), RecordingChat("b", log)])  # type: ignore[list-item]
    question = [ChatMessage(role="user", content="Why is the sky blue?")]
    for _ in range(3):
        await pool.prime(question, "Why is the sky blue")
        await pool.sentence_end_probability(question, "Why is the sky blue")
        assert "".join([d async for d in pool.stream(question)]) == "Yes."
    turns = [log[i : i + 3] for i in range(0, len(log), 3)]
    assert all(len({entry.split()[1] for entry in turn}) == 1 for turn in turns), turns
    assert {turn[0].split()[1] for turn in turns} == {"a", "b"}  # the replies still share the backends
