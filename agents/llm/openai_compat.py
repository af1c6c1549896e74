"""A streaming client for any OpenAI-compatible ``/chat/completions`` server (vLLM, llama.cpp, Ollama…)."""

from __future__ import annotations

import collections
import json
import logging
import math
from typing import Any, AsyncIterator

import aiohttp

from parley.agents.llm.base import ChatMessage, LlmHealth
from parley.core.errors import BackendError

log = logging.getLogger(__name__)


# Marks that end a sentence: a next token made only of these (or of nothing a reader sees, such as the
# chat template's end-of-message token, or a newline) means "the words stop here".
SENTENCE_END_MARKS = frozenset(".?!。？！…")
_CUT = "\u2063\u2063parley-cut\u2063\u2063"  # marks where a rendered prompt is cut (invisible separators, never said)
# Sentence-end probabilities of the last prompts primed or judged, kept by prompt: the judgement of words a
# prime has just evaluated is read from here instead of asked again (on 2 cores the server re-evaluates the
# last token to give its probabilities: ~0.1 s on the turn's critical path).
JUDGED_PROMPTS_KEPT = 8


def sentence_end_mass(top_logprobs: list[dict[str, Any]]) -> float:
    """The probability, among a next token's top candidates, that it ends the sentence (see ``SENTENCE_END_MARKS``)."""
    total = 0.0
    for candidate in top_logprobs:
        token = str(candidate.get("token", "")).strip()
        if all(ch in SENTENCE_END_MARKS for ch in token):
            total += math.exp(float(candidate.get("logprob", -math.inf)))
    return min(1.0, total)


STREAM_S_PER_TOKEN = 0.5  # the slowest pace a reply may be written at (2 tokens a second) before it fails


def _pinned(slot: int | None) -> dict[str, int]:
    """The request field that puts it in llama.cpp's slot ``slot`` (none: the server picks)."""
    return {} if slot is None else {"id_slot": slot}


def parse_sse_line(line: str) -> str | None:
    """Return the text delta carried by one SSE line, or ``None`` (comments, role-only, usage, [DONE])."""
    line = line.strip()
    if not line.startswith("data:"):
        return None  # blank keep-alives and ": ping" comments
    payload = line[5:].strip()
    if payload == "[DONE]":
        return None
    try:
        chunk = json.loads(payload)
    except json.JSONDecodeError:
        log.warning("ignoring a malformed stream chunk: %.80s", payload)
        return None
    choices = chunk.get("choices") or []  # vLLM ends with choices: [] and usage
    if not choices:
        return None
    delta = choices[0].get("delta") or {}
    content = delta.get("content")
    return content if isinstance(content, str) and content else None


class OpenAICompatibleChat:
    """Streams replies from ``{base_url}/chat/completions`` with ``stream: true``."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "",
        max_tokens: int = 120,
        temperature: float = 0.3,
        timeout_s: float = 30.0,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._max_tokens = max_tokens
        self._temperature = temperature
        # total: the whole reply; sock_read: a server that stops sending mid-reply; connect: a dead host.
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(5.0, timeout_s), sock_read=min(10.0, timeout_s))
        self._extra = extra_body or {}
        self._session: aiohttp.ClientSession | None = None
        self._raw_completions = True  # llama.cpp's /apply-template and /completion; off once a server lacks them
        self._judged: collections.OrderedDict[str, float] = collections.OrderedDict()  # prompt → sentence-end probability

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # A cancelled turn abandons its response mid-stream; never hand that socket to the next turn.
            connector = aiohttp.TCPConnector(force_close=True)
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        return self._session

    async def stream(self, messages: list[ChatMessage], max_tokens: int | None = None, slot: int | None = None) -> AsyncIterator[str]:
        """The reply to ``messages`` as it is written; ``slot``: the llama.cpp server's slot to write it in
        (``agents/llm/slots.py``; ``None``: wherever the server puts it)."""
        body = {
            "model": self.model,
            "messages": [m.model_dump() for m in messages],
            "stream": True,
            "max_tokens": max_tokens or self._max_tokens,
            "temperature": self._temperature,
            **self._extra,
            **_pinned(slot),
        }
        # A reply is bounded by its pace, not by a wall-clock total that its length alone can exceed: a long
        # Mandarin reply written at ~4 tokens a second beside Kokoro on 2 cores failed at 30 s, mid-sentence.
        # (A server that stops sending for sock_read seconds still fails at once.)
        total = max(self._timeout.total or 0.0, (max_tokens or self._max_tokens) * STREAM_S_PER_TOKEN)
        timeout = aiohttp.ClientTimeout(total=total, sock_connect=self._timeout.sock_connect, sock_read=self._timeout.sock_read)
        try:
            async with self._client().post(
                f"{self.base_url}/chat/completions", json=body, headers=self._headers, timeout=timeout,
            ) as resp:
                if resp.status != 200:
                    text = (await resp.text())[:300]
                    raise BackendError(f"LLM server answered HTTP {resp.status}: {text}", code="llm_failed")
                async for raw in resp.content:
                    delta = parse_sse_line(raw.decode("utf-8", "replace"))
                    if delta:
                        yield delta
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            # refused, reset, cut off mid-reply (the server went away), or no answer in time
            raise BackendError(f"LLM server {self.base_url} is unavailable: {exc!r}", code="llm_unavailable") from exc
        except aiohttp.ClientError as exc:
            raise BackendError(f"LLM server {self.base_url} failed: {exc!r}", code="llm_failed") from exc

    async def prime(self, messages: list[ChatMessage], words: str | None = None, slot: int | None = None) -> None:
        """Have the server evaluate ``messages`` into its prompt cache, so a request that starts the same
        way later only pays for what differs. With ``words`` (the caller's words so far in the last
        message, or ``""`` for a question not asked yet), only the conversation up to the end of those
        words goes in: the end-of-message and reply-header tokens after them would not be what the real
        request has there (more words come), and on a CPU every token of prefill costs ~25 ms. Without
        ``words``, or on a server without llama.cpp's raw endpoints, the whole chat request goes in (one
        token generated, discarded). Failures only cost the head start. A prime of words is also their
        sentence-end judgement: the probabilities come with the evaluation (see ``sentence_end_probability``)."""
        try:
            if self._raw_completions and words is not None and messages:
                prompt = await self._prompt_through(messages, words)
                if prompt is not None:
                    await self._judge(prompt, slot)
                    return
            async for _ in self.stream(messages, max_tokens=1, slot=slot):
                pass
        except _NotServed:
            self._not_served()
        except (BackendError, KeyError, IndexError, TypeError, ValueError) as exc:
            log.debug("priming the prompt cache failed: %s", exc)

    async def _prompt_through(self, messages: list[ChatMessage], words: str) -> str | None:
        """The server's own rendering of ``messages`` (its chat template), cut right after ``words`` in
        the last message (``""``: just after that message's header); ``None`` if they are not in it."""
        last = messages[-1].content
        at = last.rfind(words) if words else 0
        if at < 0:
            return None
        at += len(words)
        marked = [*messages[:-1], ChatMessage(role=messages[-1].role, content=f"{last[:at]}{_CUT}{last[at:]}")]
        template = await self._post_json(f"{self._root}/apply-template", {"messages": [m.model_dump() for m in marked]})
        prompt = str(template.get("prompt", ""))
        cut = prompt.rfind(_CUT)
        return prompt[:cut] if cut >= 0 else None

    def _not_served(self) -> None:
        log.info(
            "LLM server %s has no /apply-template or /completion: turns end on the voice and word rules only, "
            "and primes are whole chat requests", self._root,
        )
        self._raw_completions = False

    @property
    def _root(self) -> str:
        return self.base_url.removesuffix("/v1")

    async def sentence_end_probability(self, messages: list[ChatMessage], words: str, slot: int | None = None) -> float | None:
        """How likely the conversation's last user message, ``words``, ends where it does: the model's
        probability that the next token closes the message or the sentence. ``None`` where the server
        cannot say (it is not llama.cpp's, or it failed). Evaluates the conversation into the server's
        prompt cache on the way, so the reply to the same words that follows only pays for its last tokens.
        Words a prime has just evaluated (the same rendered prompt) are answered from that prime's request.
        """
        if not self._raw_completions or not words:
            return None
        try:
            prompt = await self._prompt_through(messages, words)
            if prompt is None:
                return None
            known = self._judged.get(prompt)
            return known if known is not None else await self._judge(prompt, slot)
        except _NotServed:
            self._not_served()
        except (BackendError, KeyError, IndexError, TypeError, ValueError) as exc:
            log.debug("the sentence-end probability failed: %s", exc)
        return None

    async def _judge(self, prompt: str, slot: int | None = None) -> float:
        """Evaluate ``prompt`` into the server's cache (its ``slot``, where given) and return (and keep) the
        probability that the next token ends the sentence."""
        body = {"prompt": prompt, "n_predict": 1, "n_probs": 20, "temperature": 0, "cache_prompt": True, **_pinned(slot)}
        answer = await self._post_json(f"{self._root}/completion", body)
        probability = sentence_end_mass(answer["completion_probabilities"][0]["top_logprobs"])
        timings = answer.get("timings")
        if isinstance(timings, dict) and log.isEnabledFor(logging.DEBUG):  # what the server evaluated anew
            log.debug(
                "evaluated %s new tokens (%s from the cache) in %s ms", timings.get("prompt_n"), timings.get("cache_n"),
                timings.get("prompt_ms"),
            )
        self._judged[prompt] = probability
        self._judged.move_to_end(prompt)
        while len(self._judged) > JUDGED_PROMPTS_KEPT:
            self._judged.popitem(last=False)
        return probability

    async def _post_json(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            async with self._client().post(url, json=body, headers=self._headers) as resp:
                if resp.status in (404, 405, 501):
                    raise _NotServed(url)
                if resp.status != 200:
                    raise BackendError(f"LLM server answered HTTP {resp.status} to {url}", code="llm_failed")
                answer = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BackendError(f"LLM server {url} failed: {exc!r}", code="llm_unavailable") from exc
        if not isinstance(answer, dict):
            raise BackendError(f"LLM server answered {url} with {type(answer).__name__}, not an object", code="llm_failed")
        return answer

    async def served_models(self) -> list[str]:
        """The model ids ``GET {base_url}/models`` lists; raises ``BackendError`` when the server is unreachable."""
        try:
            async with self._client().get(
                f"{self.base_url}/models", headers=self._headers, timeout=aiohttp.ClientTimeout(total=5)
            ) as resp:
                if resp.status != 200:
                    raise BackendError(f"LLM server answered HTTP {resp.status} to GET /models", code="llm_failed")
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise BackendError(f"LLM server {self.base_url} is unavailable: {exc!r}", code="llm_unavailable") from exc
        return [str(m.get("id")) for m in (body.get("data") or []) if isinstance(m, dict)]

    async def health(self) -> LlmHealth:
        """Ready when ``GET /models`` answers (within 5 s)."""
        try:
            await self.served_models()
        except BackendError as exc:
            return LlmHealth("unreachable", detail=str(exc))
        return LlmHealth("ready")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class _NotServed(Exception):
    """The server has no such endpoint (it is not llama.cpp's)."""
