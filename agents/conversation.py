"""``Conversation``: what was said in one call, in order, and the LLM prompt built from it.

The turn controller (``agents/session.py``) decides what goes in and comes out; this class only keeps
the messages and knows how a prompt is made of them (the system prompt, the recent turns, words said
between replies merged into one user message, the language reminder).
"""

from __future__ import annotations

from parley.agents.llm.base import ChatMessage
from parley.agents.profile import AgentProfile, Speaker


class Conversation:
    """One call's history (``messages``, oldest first) and the prompts made of it."""

    def __init__(self, profile: AgentProfile, max_turns: int) -> None:
        self.messages: list[ChatMessage] = []
        self._profile = profile  # shared with the session: a client may change its prompt or voice
        self._max_turns = max_turns

    def add(self, message: ChatMessage) -> ChatMessage:
        """Append ``message`` (this very object: ``forget`` and ``replace`` find it by identity)."""
        self.messages.append(message)
        return message

    def forget(self, message: ChatMessage | None) -> bool:
        """Take ``message`` out (False if it is not in the conversation)."""
        index = self._index_of(message)
        if index is not None:
            del self.messages[index]
        return index is not None

    def replace(self, message: ChatMessage | None, new: ChatMessage) -> bool:
        """Put ``new`` where ``message`` stands (False, and nothing changed, if it is not in the conversation)."""
        index = self._index_of(message)
        if index is not None:
            self.messages[index] = new
        return index is not None

    def _index_of(self, message: ChatMessage | None) -> int | None:
        """Where this very message object stands (equal messages are not the same one)."""
        return next((i for i, kept in enumerate(self.messages) if kept is message), None)

    @staticmethod
    def user_message(text: str, speaker: Speaker | None, group: bool) -> ChatMessage:
        """``speaker``'s words as a user message (named in a group call, where several people talk)."""
        return ChatMessage(role="user", content=f"{speaker.name}: {text}" if group and speaker is not None else text)

    def prompt(self, group: bool, language: str, history: list[ChatMessage] | None = None) -> list[ChatMessage]:
        """The LLM's prompt: the system prompt of a reply in ``language`` and the recent ``history`` (this
        conversation's own by default)."""
        history = self.messages if history is None else history
        keep = self._max_turns * 2
        history = history[-keep:] if keep else []
        merged: list[ChatMessage] = []
        for message in history:  # words said between replies become one user message
            if merged and message.role == "user" and merged[-1].role == "user":
                merged[-1] = ChatMessage(role="user", content=f"{merged[-1].content}\n{message.content}")
            else:
                merged.append(message)
        reminder = self._profile.reminder(language)
        if reminder and merged and merged[-1].role == "user":  # said in the prompt only, never kept in the history
            merged[-1] = ChatMessage(role="user", content=f"{merged[-1].content}\n{reminder}")
        return [ChatMessage(role="system", content=self._profile.prompt(group, language)), *merged]

    def prompt_if_asked(self, asked: ChatMessage, instead_of: ChatMessage | None, group: bool, language: str) -> list[ChatMessage]:
        """The prompt if ``asked`` came next, with ``instead_of`` (a question it continues) left out."""
        kept = [m for m in self.messages if instead_of is None or m is not instead_of]
        return self.prompt(group, language, [*kept, asked])
