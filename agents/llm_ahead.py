"""``LlmAhead``: the LLM work one call does before a turn commits, and the one queue it keeps.

While the caller speaks, the conversation and their words so far go into the LLM server's prompt cache
(primes); as soon as a pause's words are known, whether they stop mid-sentence is asked (``SentenceEnds``)
and a reply to them is started (``SpeculativeReply``), adopted if the turn ends on those very words. All
of it shares one cache slot of the server: a request sent beside one still in flight would land in
another slot and evaluate the whole conversation again, so each waits (briefly) for the one before.

``Anticipation`` (``agents/anticipation.py``) decides *when* (the floor, who is speaking, what is held);
this class only does the work, keeps at most one priming request and one speculative reply, and counts
them (``SpeculationStats``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import AsyncIterator, Callable, Mapping

from parley.agents.llm.base import ChatMessage, ChatModel
from parley.agents.sentence_end import SentenceEnds
from parley.agents.speculation import SpeculativeReply
from parley.agents.stage_timer import SpeculationStats

PRIME_WAIT_S = 0.5  # longest a request waits for a priming request still in the LLM (they share its cache)


class LlmAhead:
    """Primes, sentence-end judgements and the speculative reply of one call (see the module docstring)."""

    def __init__(
        self, llm: ChatModel, stats: SpeculationStats, *, threshold: float, min_words: int,
        thresholds: Mapping[str, float] | None = None, log: logging.Logger | logging.LoggerAdapter | None = None,
        name: str = "", writing: Callable[[], bool] | None = None,
    ) -> None:
        # Every request of this call in one slot of the LLM server where it has them (the embedded llama.cpp:
        # ``agents/llm/slots.py``), so none lands beside the call's own reply and evaluates it all anew.
        pinned = getattr(llm, "pinned", None)
        self._pinned = pinned() if pinned is not None else None
        llm = self._pinned or llm
        self._llm = llm
        self._stats = stats
        self._log = log or logging.getLogger(__name__)
        self._name = name
        self._priming: asyncio.Task[None] | None = None  # the conversation so far, going into the LLM's cache
        self._speculation: SpeculativeReply | None = None
        self.sentence_ends = SentenceEnds(llm, threshold, min_words, self.priming_done, thresholds, writing)
        self.closed = False

    # ---- the prompt cache ----

    def prime(self, messages: Callable[[], list[ChatMessage]], words: str) -> bool:
        """Send ``messages()`` into the LLM's cache up to the caller's ``words`` (the last message's),
        unless it cannot be primed, this is closed, or a priming request is still in flight (one at a
        time); whether it was sent."""
        prime = getattr(self._llm, "prime", None)
        if prime is None or self.closed or (self._priming is not None and not self._priming.done()):
            return False
        self._priming = asyncio.create_task(prime(messages(), words), name=f"llm-prime-{self._name}")
        if self._log.isEnabledFor(logging.DEBUG):
            sent = time.monotonic()
            self._priming.add_done_callback(lambda _: self._log.debug(
                "primed %d characters in %.0f ms", len(words), (time.monotonic() - sent) * 1000))
        return True

    def yielding(self) -> contextlib.AbstractContextManager[bool]:
        """The LLM stopped for a ``with`` block where it can be (``EmbeddedLlm.yielding``), else nothing."""
        yielding = getattr(self._llm, "yielding", None)
        return yielding() if yielding is not None else contextlib.nullcontext(False)

    def yielding_to_transcription(self) -> contextlib.AbstractContextManager[bool]:
        """The LLM stopped for a ``with`` block in which this call's pause is transcribed, where it can be and
        only this call's work is in it (``EmbeddedLlm.yielding_to_transcription``), else nothing."""
        yielding = getattr(self._pinned, "yielding_to_transcription", None)
        return yielding() if yielding is not None else contextlib.nullcontext(False)

    def stop_yielding(self) -> None:
        """End the LLM's ``yielding`` stop now, where it has one (``EmbeddedLlm.stop_yielding``)."""
        stop = getattr(self._llm, "stop_yielding", None)
        if stop is not None:
            stop()

    async def priming_done(self) -> None:
        """Wait (≤ ``PRIME_WAIT_S``) for a priming request still in the LLM."""
        if self._priming is not None and not self._priming.done():
            await asyncio.wait({self._priming}, timeout=PRIME_WAIT_S)

    async def stream(self, messages: list[ChatMessage]) -> AsyncIterator[str]:
        """The LLM's reply to ``messages``, asked once a priming or sentence-end request in flight is done
        (both then land in the same cache slot of the LLM server instead of racing for two)."""
        before = [t for t in (self._priming, *self.sentence_ends.tasks) if t is not None and not t.done()]
        if before:
            waited = time.monotonic()
            await asyncio.wait(before, timeout=PRIME_WAIT_S)
            self._log.debug("the reply waited %.0f ms for the LLM's cache slot", (time.monotonic() - waited) * 1000)
        async with contextlib.aclosing(self._llm.stream(messages)) as stream:
            async for delta in stream:
                yield delta

    # ---- the speculative reply ----

    def speculate(self, pause: int, speaker: str, text: str, messages: list[ChatMessage]) -> SpeculativeReply:
        """Start the reply to ``text`` (``speaker``'s words in ``pause``), replacing any other one (one
        already started on these very words, conversation and pause goes on instead); that reply."""
        same = self._speculation_of(speaker, pause)
        if same is not None and same.active and same.matches(text, messages):
            return same
        if self._speculation is not None:
            self._speculation.cancel()
        self._log.debug("speculative reply to %r (pause %d)", text, pause)
        self._speculation = SpeculativeReply(pause, speaker, text, messages, self.stream, self._stats)
        return self._speculation

    def speculating(self, speaker: str, pause: int) -> bool:
        """Whether a reply to ``speaker``'s words in ``pause`` is under way."""
        spec = self._speculation_of(speaker, pause)
        return spec is not None and spec.active

    def cancel(self, speaker: str, pause: int | None, reason: str) -> None:
        """Throw away the speculative reply started for ``speaker`` (in ``pause`` only, when given)."""
        spec = self._speculation_of(speaker, pause)
        if spec is None:
            return
        self._speculation = None
        if spec.active:
            self._log.debug("speculative reply to %r dropped: %s", spec.text, reason)
            spec.cancel()

    def cancel_unless(self, speaker: str, pause: int | None, reason: str) -> None:
        """Throw away ``speaker``'s speculative reply unless it was started in ``pause``."""
        spec = self._speculation
        if pause is None or (spec is not None and spec.pause != pause):
            self.cancel(speaker, None, reason)

    def take(self, speaker: str, pause: int | None) -> SpeculativeReply | None:
        """The reply started for ``speaker`` in ``pause``, handed over to the turn (``None`` if none)."""
        spec = None if pause is None else self._speculation_of(speaker, pause)
        if spec is not None:
            self._speculation = None
        return spec

    def _speculation_of(self, speaker: str, pause: int | None) -> SpeculativeReply | None:
        """The speculative reply kept, if it is ``speaker``'s (and started in ``pause``, when given)."""
        spec = self._speculation
        if spec is None or spec.speaker != speaker or (pause is not None and spec.pause != pause):
            return None
        return spec

    # ---- settings and the end ----

    def use_thresholds(self, threshold: float, min_words: int, thresholds: Mapping[str, float]) -> None:
        """The sentence-end thresholds for judgements from now on (a Realtime client's ``turn_detection``)."""
        ends = self.sentence_ends
        ends.threshold, ends.min_words, ends.thresholds = threshold, min_words, dict(thresholds)

    async def close(self) -> None:
        """Cancel the speculative reply, the priming request and every judgement in flight."""
        self.closed = True
        if self._speculation is not None:
            self._speculation.cancel()
            self._speculation = None
        if self._priming is not None:
            self._priming.cancel()
            with contextlib.suppress(BaseException):
                await self._priming
        await self.sentence_ends.close()
        if self._pinned is not None:
            self._pinned.release()  # (a request still in its slot is being cancelled; the next call may queue behind it)
