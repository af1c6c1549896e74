"""The LLM interface, shaped like OpenAI chat-completions streaming."""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Literal, Protocol

from pydantic import BaseModel

# ready: answering. restarting: the embedded child is coming back. failed: restarts stopped.
# unreachable: an LLM server URL does not answer. closed: shut down.
LlmStatus = Literal["ready", "restarting", "failed", "unreachable", "closed"]


@dataclass(frozen=True)
class LlmHealth:
    status: LlmStatus
    restarts: int = 0  # embedded children started after the first one
    detail: str = ""  # why it is not ready, when it is not

    @property
    def ready(self) -> bool:
        return self.status == "ready"


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatModel(Protocol):
    """A streaming chat model; cancelling the iteration must stop the generation."""

    name: str

    def stream(self, messages: list[ChatMessage]) -> AsyncIterator[str]:
        """Yield the reply's text deltas as they are generated."""
        ...

    async def prime(self, messages: list[ChatMessage], words: str | None = None) -> None:
        """Evaluate ``messages`` into the server's prompt cache ahead of the real request (best effort);
        with ``words``, only up to the end of those words in the last message (the caller may go on)."""
        ...

    async def sentence_end_probability(self, messages: list[ChatMessage], words: str) -> float | None:
        """How likely the last user message, ``words``, is finished where it stops (``None``: cannot say)."""
        ...

    async def health(self) -> LlmHealth:
        """Whether the model answers now (for ``/readyz``), without generating anything."""
        ...

    async def close(self) -> None:
        """Release connections and processes."""
        ...
