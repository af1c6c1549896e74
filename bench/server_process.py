"""Start and stop a ``parley serve`` child for a benchmark, and read its CPU time and memory from /proc."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp

from parley.core.net import free_loopback_port, free_loopback_port_run

_TICKS = os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """The pid and all its descendants (the embedded LLM runs as a child)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def cpu_by_process(pid: int) -> dict[int, float]:
    """User + system CPU seconds used so far by ``pid`` and each of its descendants."""
    out: dict[int, float] = {}
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            out[p] = (int(fields[11]) + int(fields[12])) / _TICKS
        except (OSError, IndexError, ValueError):
            continue
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and its descendants."""
    return sum(cpu_by_process(pid).values())


def _role(pid: int) -> str:
    """A short name for a process of a Parley tree: parley, llm-server, or its executable's name."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    text = b" ".join(argv).decode(errors="replace")
    if "embedded_server" in text:
        return "llm-server"
    if "parley" in text:
        return "parley"
    return Path(argv[0].decode(errors="replace")).name or "?"


def rss_by_process(pid: int) -> dict[str, float]:
    """Resident memory in MB of ``pid`` and each descendant, by role (``parley``, ``llm-server``…)."""
    out: dict[str, float] = {}
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    role = _role(p)
                    out[role] = out.get(role, 0.0) + int(line.split()[1]) / 1024
        except OSError:
            continue
    return out


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


async def stop_child(process: asyncio.subprocess.Process, grace_s: float = 10.0, *, group: bool = False) -> None:
    """SIGTERM, then SIGKILL if it is still running after ``grace_s``; nothing if it already exited.

    ``group``: the child leads its own session (``start_new_session``): signal its whole process group,
    so processes it forked go with it.
    """
    def send(sig: int) -> None:
        try:
            os.killpg(process.pid, sig) if group else process.send_signal(sig)
        except ProcessLookupError:
            pass

    if process.returncode is None:
        send(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace_s)
        except TimeoutError:
            send(signal.SIGKILL)
            await process.wait()
    if group:
        send(signal.SIGKILL)  # whatever it forked and left behind


class ServerProcess:
    """A ``parley serve`` child on 127.0.0.1 with settings given as ``PARLEY_*`` variables."""

    def __init__(self, env: dict[str, str], log_path: Path, ready_timeout_s: float = 300.0, workers: int = 1) -> None:
        self.workers = workers  # > 1: `parley serve --workers N` (the next N ports are the workers' own)
        self.port = free_loopback_port_run(workers + 1) if workers > 1 else free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = {**os.environ, **env}
        self._log_path = log_path
        self._ready_timeout_s = ready_timeout_s
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> "ServerProcess":
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "parley.server.cli", "serve", "--dev", "--host", "127.0.0.1", "--port", str(self.port),
                "--ice-host-address", "127.0.0.1", *(["--workers", str(self.workers)] if self.workers > 1 else []),
                env=self._env, stdout=log, stderr=log, start_new_session=self.workers > 1,
            )
        deadline = time.monotonic() + self._ready_timeout_s
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.process.returncode is not None:
                    raise RuntimeError(f"parley serve exited with {self.process.returncode}; see {self._log_path}")
                try:
                    async with http.get(f"{self.url}/healthz") as resp:
                        if resp.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.3)
        await self.__aexit__(None, None, None)
        raise TimeoutError(f"parley serve was not ready within {self._ready_timeout_s:.0f} s; see {self._log_path}")

    async def __aexit__(self, *exc: object) -> None:
        if self.process is not None:
            await stop_child(self.process, group=self.workers > 1)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None
