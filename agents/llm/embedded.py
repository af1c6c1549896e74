"""The embedded CPU LLM: llama.cpp's server in a supervised child process, spoken to like any
OpenAI-compatible URL.

A child that exits is restarted with backoff (0.5 s, 1 s, 2 s … up to 10 s); the turn in flight
fails with ``llm_unavailable`` and the next one is answered by the new child. More than
``max_restarts`` exits within ``restart_window_s`` stop the restarts: the LLM is then reported
``failed`` (``health()``, ``/readyz``, the log) until ``parley serve`` is restarted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Iterator

from parley.agents.llm.base import ChatMessage, LlmHealth, LlmStatus
from parley.agents.llm.child_pause import ChildPause
from parley.agents.llm.openai_compat import OpenAICompatibleChat
from parley.agents.llm.slots import PinnedLlm, SlotLeases
from parley.core.errors import BackendError, ModelLoadError
from parley.core.net import free_loopback_port
from parley.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int = 5  # exits tolerated within the window before giving up
    window_s: float = 120.0
    first_delay_s: float = 0.5
    max_delay_s: float = 10.0


@dataclass(frozen=True)
class _Launch:
    """How to start one child (the same every time)."""

    model_path: Path
    log_path: Path
    threads: int
    context: int
    parallel: int
    cache_ram_mib: int
    ready_timeout_s: float
    nice: int = 0

    async def start(self) -> tuple[asyncio.subprocess.Process, str]:
        """A loaded child and its base URL; ``ModelLoadError`` if it does not come up."""
        port = free_loopback_port()
        with self.log_path.open("ab") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "parley.agents.llm.embedded_server",
                "--model", str(self.model_path), "--port", str(port), "--threads", str(self.threads),
                "--context", str(self.context), "--parallel", str(self.parallel), "--cache-ram", str(self.cache_ram_mib),
                "--nice", str(self.nice),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log_file,
            )
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), self.ready_timeout_s)
        except TimeoutError as exc:
            process.kill()
            await process.wait()
            raise ModelLoadError(f"LLM server did not load {self.model_path.name} within {self.ready_timeout_s:.0f} s") from exc
        info = json.loads(line) if line.strip().startswith(b"{") else {}
        if "address" not in info:
            await process.wait()
            tail = self.log_path.read_text(errors="replace").splitlines()[-5:]
            reason = info.get("error") or " | ".join(tail) or f"exit code {process.returncode}"
            raise ModelLoadError(f"LLM server could not load {self.model_path}: {reason}")
        return process, f"{info['address']}/v1"


WARM_SLOT = 0  # the slot warm-up fills with the system prompt; the first call is given it


class EmbeddedLlm:
    """Owns the llama.cpp child (restarting it when it exits) and streams from it through :class:`OpenAICompatibleChat`."""

    name = "embedded"

    def __init__(
        self, launch: _Launch, process: asyncio.subprocess.Process, base_url: str, *,
        max_tokens: int, temperature: float, timeout_s: float, policy: RestartPolicy, yield_to_voice: bool = True,
        yield_to_transcription: bool = True,
    ) -> None:
        self._launch = launch
        self._process: asyncio.subprocess.Process | None = process
        self._chat_options = {"max_tokens": max_tokens, "temperature": temperature, "timeout_s": timeout_s}
        self._client = self._new_client(base_url)
        self._policy = policy
        self._status: LlmStatus = "ready"
        self._detail = ""
        self.restarts = 0
        self._exits: collections.deque[float] = collections.deque()
        self._supervisor = asyncio.create_task(self._supervise(), name="parley-llm-supervisor")
        self._streams = 0  # replies being written now
        self.slots = SlotLeases(launch.parallel)  # which call holds which of the child's slots
        self._yield_to_voice = yield_to_voice
        self._yield_to_transcription = yield_to_transcription
        self._pause = ChildPause()
        self._in_flight: collections.Counter[int | None] = collections.Counter()  # requests in the child, by slot
        self._stopped_for: int | None = None  # the slot whose pause is being transcribed with the child stopped

    @classmethod
    async def start(
        cls,
        model_path: Path,
        *,
        log_dir: Path,
        threads: int = 2,
        context: int = 4096,
        parallel: int = 4,
        max_tokens: int = 120,
        temperature: float = 0.3,
        timeout_s: float = 30.0,
        cache_ram_mib: int = 0,
        ready_timeout_s: float = 180.0,
        nice: int = 0,
        policy: RestartPolicy = RestartPolicy(),
        yield_to_voice: bool = True,
        yield_to_transcription: bool = True,
    ) -> "EmbeddedLlm":
        """Start the child, wait until the model is loaded, and watch it from then on."""
        log_dir.mkdir(parents=True, exist_ok=True)
        launch = _Launch(model_path, log_dir / "llm-server.log", threads, context, parallel, cache_ram_mib, ready_timeout_s, nice)
        process, base_url = await launch.start()
        return cls(
            launch, process, base_url, max_tokens=max_tokens, temperature=temperature, timeout_s=timeout_s, policy=policy,
            yield_to_voice=yield_to_voice, yield_to_transcription=yield_to_transcription,
        )

    def _new_client(self, base_url: str) -> OpenAICompatibleChat:
        return OpenAICompatibleChat(base_url, self._launch.model_path.stem, **self._chat_options)  # type: ignore[arg-type]

    async def _supervise(self) -> None:
        policy = self._policy
        while True:
            process = self._process
            if process is not None:
                code = await process.wait()
                if self._status == "closed":
                    return
                now = time.monotonic()
                self._exits.append(now)
                while self._exits and now - self._exits[0] > policy.window_s:
                    self._exits.popleft()
                log.error("the embedded LLM server (pid %d) exited with code %s; see %s", process.pid, code, self._launch.log_path)
            if len(self._exits) > policy.max_restarts:
                self._status = "failed"
                self._detail = (
                    f"the embedded LLM server exited {len(self._exits)} times within {policy.window_s:g} s; "
                    f"restarts stopped (see {self._launch.log_path}); restart parley serve"
                )
                log.error("%s", self._detail)
                return
            delay = min(policy.max_delay_s, policy.first_delay_s * 2 ** max(0, len(self._exits) - 1))
            self._status, self._detail = "restarting", f"the embedded LLM server is restarting (exit {len(self._exits)} of {policy.max_restarts + 1} allowed)"
            self._process = None
            await asyncio.sleep(delay)
            try:
                process, base_url = await self._launch.start()
            except ModelLoadError as exc:
                log.error("restarting the embedded LLM server failed: %s", exc)
                self._exits.append(time.monotonic())
                continue
            old, self._client = self._client, self._new_client(base_url)
            await old.close()
            self._process = process
            self.restarts += 1
            self._status, self._detail = "ready", ""
            log.info("the embedded LLM server is back (pid %d, restart %d)", process.pid, self.restarts)

    async def health(self) -> LlmHealth:
        return LlmHealth(self._status, self.restarts, self._detail)

    async def warm_up(self, system_prompt: str) -> None:
        """Run one tiny request so the first caller does not pay for cold caches."""
        messages = [ChatMessage(role="system", content=system_prompt), ChatMessage(role="user", content="Hi")]
        stream = self._client.stream(messages, slot=WARM_SLOT)  # (the slot the first call is given)
        self.slots.warmed(WARM_SLOT)
        async for _ in stream:
            break
        await stream.aclose()

    @property
    def base_url(self) -> str:
        """The child's OpenAI-compatible URL (``…/v1``), for other clients of the same server."""
        return self._client.base_url

    @property
    def model(self) -> str:
        return self._client.model

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _ready_process(self) -> asyncio.subprocess.Process | None:
        """The child, while it runs and answers (``None`` while it restarts, after it failed, once closed)."""
        process = self._process
        return process if process is not None and process.returncode is None and self._status == "ready" else None

    def stream(self, messages: list[ChatMessage], slot: int | None = None) -> AsyncIterator[str]:
        if self._ready_process() is None:
            raise BackendError(self._detail or f"the embedded LLM server is not running; see {self._launch.log_path}", code="llm_unavailable")
        return self._counted(self._client.stream(messages, slot=slot), slot)

    def pinned(self) -> PinnedLlm | None:
        """This LLM for one call, every request in one slot of the server (``agents/llm/slots.py``);
        ``None`` while every slot is held by another call."""
        slot = self.slots.lease()
        return PinnedLlm(self, slot, self.slots) if slot is not None else None

    async def _counted(self, stream: AsyncIterator[str], slot: int | None) -> AsyncIterator[str]:
        self._streams += 1
        try:
            with self._request(slot):
                async with contextlib.aclosing(stream) as deltas:  # type: ignore[type-var]
                    async for delta in deltas:
                        yield delta
        finally:
            self._streams -= 1

    @contextlib.contextmanager
    def _request(self, slot: int | None) -> Iterator[None]:
        """Count a request to the child (by ``slot``) while it is in flight; one for another slot than the
        one the child is stopped for (``yielding_to_transcription``) ends that stop: it must not stall."""
        if self._stopped_for is not None and slot != self._stopped_for:
            self._pause.resume()
        self._in_flight[slot] += 1
        try:
            yield
        finally:
            self._in_flight[slot] -= 1
            if self._in_flight[slot] <= 0:
                del self._in_flight[slot]

    @contextlib.contextmanager
    def yielding(self) -> Iterator[bool]:
        """Stop the child for the ``with`` block (``ChildPause``, at most 3 s), so that a slow voice
        synthesizing a reply's first words has the cores; yields whether it was stopped. Only while that
        reply is the one being written (another call's would stall: nothing is stopped then), and not at
        all with ``llm.yield_to_voice`` off."""
        process = self._ready_process()
        pid = process.pid if process is not None and self._yield_to_voice and self._streams == 1 else None
        with self._pause.paused(pid) as stopped:
            yield stopped

    @contextlib.contextmanager
    def yielding_to_transcription(self, slot: int) -> Iterator[bool]:
        """Stop the child for the ``with`` block (at most 3 s) while the pause of the call holding ``slot``
        is transcribed — only if every request in the child is that call's own (a prime, a judgement: work
        that waits for the transcript anyway), and not with ``llm.yield_to_transcription`` off. A request
        of another call ends the stop (``_request``). Yields whether it was stopped."""
        process = self._ready_process()
        own = self._in_flight.get(slot, 0)
        alone = own > 0 and own == sum(self._in_flight.values())
        pid = process.pid if process is not None and self._yield_to_transcription and alone else None
        with self._pause.paused(pid) as stopped:
            if stopped:
                self._stopped_for = slot
            try:
                yield stopped
            finally:
                if stopped:
                    self._stopped_for = None

    def stop_yielding(self) -> None:
        """End a ``yielding`` stop now (the caller speaks over the first words it was for: hearing them
        comes first, and the request for their words may wait in the stopped child)."""
        self._pause.resume()

    async def prime(self, messages: list[ChatMessage], words: str | None = None, slot: int | None = None) -> None:
        """Evaluate ``messages`` (up to ``words``) into the child's prompt cache ahead of the real request."""
        if self._status == "ready":
            with self._request(slot):
                await self._client.prime(messages, words, slot=slot)

    async def sentence_end_probability(self, messages: list[ChatMessage], words: str, slot: int | None = None) -> float | None:
        """See :meth:`OpenAICompatibleChat.sentence_end_probability` (``None`` while the child is not ready)."""
        if self._status != "ready":
            return None
        with self._request(slot):
            return await self._client.sentence_end_probability(messages, words, slot=slot)

    async def close(self) -> None:
        self._status = "closed"
        self._pause.resume()  # (a stopped child could not read the end of its stdin)
        await cancel_and_wait(self._supervisor)
        await self._client.close()
        process = self._process
        if process is not None and process.returncode is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
