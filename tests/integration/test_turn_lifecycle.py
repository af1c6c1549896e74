"""``parley turn`` and its coturn live and die together: stop signals and SIGHUP are passed on, a coturn
that dies ends ``parley turn`` with a non-zero status and coturn's last lines."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aioice import stun

from tests.support.coturn import SECRET, allocate, free_udp_tcp_port, udp_tcp_port_free

pytestmark = pytest.mark.slow
PARLEY = Path(sys.executable).parent / "parley"


def _turn_env(tmp_path: Path, port: int, log_file: str) -> dict[str, str]:
    relay_from = random.randrange(41_000, 60_000, 200)
    return {
        **os.environ, "PARLEY_CONFIG": "", "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "PARLEY_TURN__ENABLED": "true", "PARLEY_TURN__SECRET": SECRET, "PARLEY_TURN__PORT": str(port),
        "PARLEY_TURN__TLS_PORT": str(free_udp_tcp_port()), "PARLEY_TURN__MIN_PORT": str(relay_from),
        "PARLEY_TURN__MAX_PORT": str(relay_from + 199), "PARLEY_TURN__LOG_FILE": log_file,
    }


def _turnservers_of(config: Path) -> list[int]:
    """PIDs of turnserver processes running with ``config``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"turnserver") and str(config).encode() in argv:
                found.append(int(entry.name))
    return found


async def _refused_allocation(port: int) -> bool:
    """Ask coturn for an allocation with a wrong password (it answers 401 and logs a line)."""
    try:
        await asyncio.wait_for(allocate(("127.0.0.1", port), f"{int(time.time()) + 60}:probe", "wrong"), 5)
    except stun.TransactionFailed:
        return True
    except (asyncio.TimeoutError, stun.TransactionTimeout, OSError):
        return False
    return False


async def _start(tmp_path: Path, log_file: str) -> tuple[subprocess.Popen, int, Path]:
    port = free_udp_tcp_port()
    out = (tmp_path / "parley-turn.out").open("w")
    process = subprocess.Popen([str(PARLEY), "turn"], env=_turn_env(tmp_path, port, log_file), stdout=out, stderr=subprocess.STDOUT)
    config = tmp_path / "cache" / "parley" / "turnserver.conf"
    deadline = time.monotonic() + 20
    while not (_turnservers_of(config) and await _refused_allocation(port)):
        assert process.poll() is None, (tmp_path / "parley-turn.out").read_text()
        assert time.monotonic() < deadline, "coturn did not answer within 20 s:\n" + (tmp_path / "parley-turn.out").read_text()
        await asyncio.sleep(0.3)
    return process, port, config


async def test_sigterm_stops_coturn_and_frees_its_port_and_sighup_reaches_it(tmp_path: Path):
    log = tmp_path / "coturn.log"
    process, port, config = await _start(tmp_path, str(log))
    try:
        [child] = _turnservers_of(config)
        # SIGHUP: coturn reopens its log file (logrotate moved it away) at its next line.
        log.rename(tmp_path / "coturn.log.1")
        process.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        assert await _refused_allocation(port)
        deadline = time.monotonic() + 5
        while not (log.exists() and "log file opened" in log.read_text()) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert log.exists() and "log file opened" in log.read_text(), "coturn did not reopen its log after SIGHUP"
        assert process.poll() is None and _turnservers_of(config) == [child]  # the HUP stopped neither

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0, (tmp_path / "parley-turn.out").read_text()
        deadline = time.monotonic() + 5
        while (_turnservers_of(config) or not udp_tcp_port_free(port)) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert not _turnservers_of(config), "a turnserver of this config was left running"
        assert udp_tcp_port_free(port), f"port {port} is still held"
    finally:
        if process.poll() is None:
            process.kill()
        for pid in _turnservers_of(config):
            os.kill(pid, signal.SIGKILL)


async def test_a_coturn_that_dies_ends_parley_turn_with_its_last_lines(tmp_path: Path):
    process, port, config = await _start(tmp_path, "stdout")
    try:
        [child] = _turnservers_of(config)
        os.kill(child, signal.SIGKILL)
        status = process.wait(timeout=10)
        output = (tmp_path / "parley-turn.out").read_text()
        assert status != 0, output
        assert "coturn was killed by SIGKILL" in output and "last log lines" in output, output
        tail = output.split("last log lines:")[-1]
        assert "401" in tail or "listener opened" in tail, tail  # coturn's own lines, relayed
    finally:
        if process.poll() is None:
            process.kill()
        for pid in _turnservers_of(config):
            os.kill(pid, signal.SIGKILL)
