"""The embedded CPU LLM: llama.cpp's server in a child process, spoken to like any OpenAI-compatible URL."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import AsyncIterator

from parley.agents.llm.base import ChatMessage
from parley.agents.llm.openai_compat import OpenAICompatibleChat
from parley.server.errors import BackendError, ModelLoadError
from parley.server.ports import free_loopback_port

log = logging.getLogger(__name__)


class EmbeddedLlm:
    """Owns the llama.cpp child process and streams from it through :class:`OpenAICompatibleChat`."""

    name = "embedded"

    def __init__(self, client: OpenAICompatibleChat, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self._client = client
        self._process = process
        self.log_path = log_path

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
        ready_timeout_s: float = 180.0,
    ) -> "EmbeddedLlm":
        """Start the child, wait until the model is loaded, and warm it up."""
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / "llm-server.log"
        port = free_loopback_port()
        with log_path.open("ab") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "parley.agents.llm.embedded_server",
                "--model", str(model_path), "--port", str(port), "--threads", str(threads),
                "--context", str(context), "--parallel", str(parallel),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log_file,
            )
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), ready_timeout_s)
        except TimeoutError as exc:
            process.kill()
            raise ModelLoadError(f"LLM server did not load {model_path.name} within {ready_timeout_s:.0f} s") from exc
        info = json.loads(line) if line.strip().startswith(b"{") else {}
        if "address" not in info:
            await process.wait()
            tail = log_path.read_text(errors="replace").splitlines()[-5:]
            reason = info.get("error") or " | ".join(tail) or f"exit code {process.returncode}"
            raise ModelLoadError(f"LLM server could not load {model_path}: {reason}")
        client = OpenAICompatibleChat(
            f"{info['address']}/v1", model_path.stem, max_tokens=max_tokens, temperature=temperature, timeout_s=timeout_s
        )
        return cls(client, process, log_path)

    async def warm_up(self, system_prompt: str) -> None:
        """Run one tiny request so the first caller does not pay for cold caches."""
        messages = [ChatMessage(role="system", content=system_prompt), ChatMessage(role="user", content="Hi")]
        stream = self._client.stream(messages)
        async for _ in stream:
            break
        await stream.aclose()

    def stream(self, messages: list[ChatMessage]) -> AsyncIterator[str]:
        if self._process.returncode is not None:
            message = f"embedded LLM server exited with code {self._process.returncode}; see {self.log_path}"
            raise BackendError(message, code="llm_unavailable")
        return self._client.stream(messages)

    async def close(self) -> None:
        await self._client.close()
        if self._process.returncode is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                await asyncio.wait_for(self._process.wait(), 5)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
