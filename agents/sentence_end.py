"""Do the caller's words stop mid-sentence? The words' half of ending turns on meaning, asked of the LLM.

Smart Turn hears the voice; a word list (``agents/unfinished.py``) catches a dangling "of", but also
holds "How many legs does a spider have?" and "Where are you from?". Neither hears that "How long does
it take", "Why do leaves" or "What is the best way" are not questions yet: they end on words a sentence
can end on, a synthetic or flat voice sounds done, and Whisper even writes a "?" after them. The
conversation's own LLM knows: given the conversation and the caller's words so far (trailing
punctuation removed), how likely is the next token one that ends the message ("?", ".", the
end-of-message token)? Far below ``threshold``, the words are cut short. Where it can be asked (an
English transcript of ``min_words`` or more, a Chinese one of ``MIN_CHINESE_CHARS`` characters, judged
against its own threshold), its verdict stands ("spider have" 0.88, "you from" 0.89);
a trailing comma or ellipsis, or a question cut after "do" and one word ("Why do leave", as Whisper hears
the paused "Why do leaves", scored 0.016–0.03 around the threshold), holds the words without asking;
elsewhere, or when the LLM cannot say, the word list decides. A high probability works the other way:
the session tells the endpointer that the pause's words read whole (``vad.text_turn_done_threshold``),
and the turn ends on a short silence even if the voice sounded unfinished.

Measured with the default model (Qwen2.5-Coder-1.5B Q4_K_M) and system prompt: 20 questions cut
mid-phrase scored ≤ 0.006, 41 finished ones of three words or more ≥ 0.18 ("How are you" 0.18, "Which
ocean is the biggest" 0.36, "What is the capital of France" 0.98); on 12 + 12 others, set aside while
choosing the threshold (tests/integration/test_sentence_end_llm.py): cut ≤ 0.005, finished ≥ 0.046
("I want to book a table for two"). Hence 0.02. The tests' SmolLM2-135M tells them apart less well
(cut ≤ 0.044, finished ≥ 0.015: two of each on the wrong side). One- and two-word answers ("No" 0.04,
"Stop" 0.10) are not asked: they score low whether finished or not. The request also
evaluates the conversation into the LLM server's prompt cache, so the reply to the same words, asked
next, only pays for its last few tokens; words a prime evaluated while the caller spoke are judged from
that prime's own request, with nothing sent (on 2 cores: judge plus first token 420–620 ms, against
420–600 ms for the first token alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Mapping

from parley.agents.llm.base import ChatMessage, ChatModel
from parley.agents.text import CJK_CHAR
from parley.agents.unfinished import ends_open, lacks_a_verb, sounds_unfinished

log = logging.getLogger(__name__)

_WORDS = re.compile(r"[\w']+")
# Languages whose words the LLM is asked about (the thresholds were measured on them; see the settings).
JUDGED_LANGUAGES = ("en", "zh")
# Chinese is written without spaces: its words are counted in characters, and fewer than this many
# ("好的", "不是", "为什么") are not asked — they score low whether finished or not, like "No" and "Stop".
MIN_CHINESE_CHARS = 4
ASK_TIMEOUT_S = 1.0  # a busy LLM server does not hold the turn up: no answer in time reads as finished
_TRAILING_MARKS = ".?!,;:…。？！，、 "


@dataclass(frozen=True)
class SentenceVerdict:
    unfinished: bool
    probability: float | None = None  # the LLM's sentence-end probability, when it was asked
    model_ms: float = 0.0  # time the LLM took to say


FINISHED = SentenceVerdict(False)


def words_so_far(text: str) -> str:
    """The caller's words without the punctuation Whisper guessed at their end."""
    return text.strip().rstrip(_TRAILING_MARKS)


class SentenceEnds:
    """Per speaker, the verdict on the words of their current pause: started as soon as the pause's
    transcript exists (``start``), awaited when the turn is decided (``verdict``)."""

    def __init__(
        self, llm: ChatModel, threshold: float, min_words: int, cache_free: Callable[[], Awaitable[None]] | None = None,
        thresholds: Mapping[str, float] | None = None, writing: Callable[[], bool] | None = None,
    ) -> None:
        self._llm = llm
        self.threshold = threshold
        self.min_words = min_words
        self.thresholds = dict(thresholds or {})  # per language ("zh"), where it differs from ``threshold``
        # Awaited before asking: a priming request still in the LLM holds the conversation's cache slot,
        # and a question asked beside it would land in another slot and evaluate the whole conversation.
        self._cache_free = cache_free
        # Whether the LLM is writing this call's reply now: a question then waits behind it in the call's slot
        # of the server (``agents/llm/slots.py``) past ASK_TIMEOUT_S, and the word rules decide at once instead.
        self._writing = writing
        self._pending: dict[str, tuple[str, asyncio.Task[SentenceVerdict]]] = {}

    def start(
        self, speaker: str, text: str, language: str, messages: Callable[[str], list[ChatMessage]],
    ) -> asyncio.Task[SentenceVerdict]:
        """Judge ``text`` (``speaker``'s pause so far) in the background; ``messages(words)`` builds the
        conversation as it would be asked with those words. The same text already being judged is not
        asked again."""
        started = self._pending.get(speaker)
        if started is not None and started[0] == text and not started[1].cancelled():
            return started[1]
        self.drop(speaker)
        task = asyncio.create_task(self._judge(text, language, messages), name=f"sentence-end-{speaker}")
        self._pending[speaker] = (text, task)
        return task

    async def verdict(self, speaker: str, text: str, language: str, messages: Callable[[str], list[ChatMessage]]) -> SentenceVerdict:
        """Whether ``speaker``'s ``text`` stops mid-sentence: the verdict started on these words, or a new one."""
        started = self._pending.pop(speaker, None)
        if started is not None and started[0] == text:
            return await started[1]
        if started is not None:
            started[1].cancel()
        return await self._judge(text, language, messages)

    @property
    def tasks(self) -> list[asyncio.Task[SentenceVerdict]]:
        """Verdicts still being reached (a reply asked now would share the LLM with them)."""
        return [task for _, task in self._pending.values() if not task.done()]

    def drop(self, speaker: str) -> None:
        started = self._pending.pop(speaker, None)
        if started is not None:
            started[1].cancel()

    async def close(self) -> None:
        tasks = [task for _, task in self._pending.values()]
        self._pending.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    async def _judge(self, text: str, language: str, messages: Callable[[str], list[ChatMessage]]) -> SentenceVerdict:
        if ends_open(text) or lacks_a_verb(text, language):  # a trailing comma or ellipsis: Whisper heard the
            return SentenceVerdict(True)  # voice go on; or "Why do leave(s)", misheard or not, has no verb yet
        words = words_so_far(text)
        ask = getattr(self._llm, "sentence_end_probability", None)
        threshold = self.threshold_for(language)
        askable = ask is not None and threshold > 0 and language.lower()[:2] in JUDGED_LANGUAGES
        if not askable or not self._long_enough(words, language) or (self._writing is not None and self._writing()):
            return SentenceVerdict(sounds_unfinished(text, language))
        started = time.perf_counter()
        if self._cache_free is not None:
            await self._cache_free()
        try:
            probability = await asyncio.wait_for(ask(messages(words), words), ASK_TIMEOUT_S)
        except TimeoutError:
            probability = None
        model_ms = round((time.perf_counter() - started) * 1000, 1)
        log.debug("sentence end of %r: %s in %.0f ms", words, probability, model_ms)
        if probability is None:  # the LLM could not say: the word rules do
            return SentenceVerdict(sounds_unfinished(text, language), None, model_ms)
        # The LLM knows better than the word list: "How many legs does a spider have?", "Where are you from?"
        return SentenceVerdict(probability < threshold, probability, model_ms)

    def threshold_for(self, language: str) -> float:
        """The sentence-end probability below which words in ``language`` read as cut short."""
        return self.thresholds.get(language.lower()[:2], self.threshold)

    def _long_enough(self, words: str, language: str) -> bool:
        """Enough words to ask about (Chinese: characters, and any Latin words among them)."""
        if language.lower().startswith("zh"):
            return len(CJK_CHAR.findall(words)) + len(_WORDS.findall(CJK_CHAR.sub(" ", words))) >= MIN_CHINESE_CHARS
        return len(_WORDS.findall(words)) >= self.min_words
