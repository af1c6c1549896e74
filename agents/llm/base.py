"""The LLM interface, shaped like OpenAI chat-completions streaming."""

from __future__ import annotations

from typing import AsyncIterator, Literal, Protocol

from pydantic import BaseModel


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatModel(Protocol):
    """A streaming chat model; cancelling the iteration must stop the generation."""

    name: str

    def stream(self, messages: list[ChatMessage]) -> AsyncIterator[str]:
        """Yield the reply's text deltas as they are generated."""
        ...

    async def close(self) -> None:
        """Release connections and processes."""
        ...
