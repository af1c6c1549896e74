"""A real ``llama_cpp.server`` (llama-cpp-python's OpenAI-compatible HTTP server) on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from parley.core.net import free_loopback_port
from tests.support.processes import stop_process


@dataclass
class LlamaCppServer:
    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, more_than: int = 0, timeout: float = 10.0) -> bool:
        """Whether ``text`` appears in the log more than ``more_than`` times within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log().count(text) > more_than:
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        stop_process(self.process, 10)


def start_llama_cpp_server(model: Path, log_path: Path, *, threads: int = 2, context: int = 2048,
                           ready_timeout_s: float = 90.0) -> LlamaCppServer:
    """Start ``python -m llama_cpp.server`` with ``model`` and wait until ``/v1/models`` answers."""
    port = free_loopback_port()
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", str(context), "--n_threads", str(threads)],
            stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    server = LlamaCppServer(process, port, log_path)
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {process.returncode}: {server.log()[-800:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/models", timeout=1) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"llama_cpp.server did not answer within {ready_timeout_s:.0f} s: {server.log()[-800:]}")
