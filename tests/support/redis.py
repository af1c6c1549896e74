"""A real ``redis-server`` on loopback for the cluster tests: started, stopped and started again on one port."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from parley.core.net import free_loopback_port
from parley.server.workers import redis_answers
from tests.support.processes import stop_process


class RedisServer:
    def __init__(self, log_path: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is missing: `make test` installs it (Debian redis-server)")
        self._binary = binary
        self._log_path = log_path
        self.port = free_loopback_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        """Start it (empty: no persistence) and wait until it answers PING."""
        log = open(self._log_path, "ab")
        self.process = subprocess.Popen(
            [self._binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while not redis_answers("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {self._log_path.read_text()[-500:]}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, 5)
            self.process = None
