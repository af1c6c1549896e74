"""``LlmPool``: several OpenAI-compatible servers (vLLM replicas) used as one chat model.

Each reply goes to the server with the fewest replies in progress. A server that cannot be reached
(``llm_unavailable`` before its first token) is set aside for ``retry_after_s`` and the reply is tried
on the next one; a server set aside is used again once that time has passed, or sooner when every
server is set aside. Only when every server fails does the turn get ``llm_unavailable``, as with one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import AsyncIterator

from parley.agents.llm.base import ChatMessage, LlmHealth
from parley.agents.llm.openai_compat import OpenAICompatibleChat
from parley.core.errors import BackendError

log = logging.getLogger(__name__)


@dataclass
class Backend:
    chat: OpenAICompatibleChat
    outstanding: int = 0  # replies streaming from it now
    down_until: float = 0.0  # set aside (unreachable) until this monotonic time
    failures: int = 0  # unreachable in a row

    @property
    def url(self) -> str:
        return self.chat.base_url


class LlmPool:
    """Streams each reply from the least-busy reachable backend; see the module docstring."""

    name = "openai-pool"

    def __init__(self, backends: list[OpenAICompatibleChat], retry_after_s: float = 10.0) -> None:
        if not backends:
            raise ValueError("an LLM pool needs at least one backend")
        self.backends = [Backend(chat) for chat in backends]
        self.retry_after_s = retry_after_s
        self._turn = 0  # rotates ties, so equal backends share the load

    def order(self, now: float | None = None, advance: bool = True) -> list[Backend]:
        """Backends in the order a reply tries them: reachable ones by replies in progress, then those set
        aside. ``advance=False`` peeks at the order the next reply will get (ties rotate per reply)."""
        now = time.monotonic() if now is None else now
        turn = self._turn + 1
        if advance:
            self._turn = turn
        n = len(self.backends)
        rotated = [self.backends[(turn + i) % n] for i in range(n)]
        ready = sorted((b for b in rotated if b.down_until <= now), key=lambda b: b.outstanding)
        aside = sorted((b for b in rotated if b.down_until > now), key=lambda b: b.down_until)
        return ready + aside

    def _set_aside(self, backend: Backend, exc: BackendError) -> None:
        backend.failures += 1
        backend.down_until = time.monotonic() + self.retry_after_s
        log.warning("LLM backend %s set aside for %g s (%s)", backend.url, self.retry_after_s, exc)

    async def stream(self, messages: list[ChatMessage], max_tokens: int | None = None) -> AsyncIterator[str]:
        last: BackendError | None = None
        for backend in self.order():
            started = False
            backend.outstanding += 1
            try:
                async for delta in backend.chat.stream(messages, max_tokens):
                    started = True
                    yield delta
            except BackendError as exc:
                if started or exc.code != "llm_unavailable":
                    raise  # mid-reply, or an answer with an error: this turn's, not the pool's, to retry
                self._set_aside(backend, exc)
                last = exc
                continue
            finally:
                backend.outstanding -= 1
            if backend.failures:
                log.info("LLM backend %s answers again", backend.url)
            backend.failures, backend.down_until = 0, 0.0
            return
        assert last is not None
        raise BackendError(f"no LLM backend of {len(self.backends)} could be reached; last: {last}", code="llm_unavailable")

    async def prime(self, messages: list[ChatMessage], words: str | None = None) -> None:
        """Primes the backend the next reply will go to (its cache is the one that reply reads)."""
        await self.order(advance=False)[0].chat.prime(messages, words)

    async def sentence_end_probability(self, messages: list[ChatMessage], words: str) -> float | None:
        return await self.order(advance=False)[0].chat.sentence_end_probability(messages, words)

    async def health(self) -> LlmHealth:
        """Ready while any backend answers ``GET /models``."""
        states = [(b.url, await b.chat.health()) for b in self.backends]
        if any(h.ready for _, h in states):
            return LlmHealth("ready")
        return LlmHealth("unreachable", detail="; ".join(f"{url}: {h.detail}" for url, h in states))

    async def served_models(self) -> list[str]:
        for backend in self.backends:
            try:
                return await backend.chat.served_models()
            except BackendError:
                continue
        return []

    async def close(self) -> None:
        for backend in self.backends:
            await backend.chat.close()
