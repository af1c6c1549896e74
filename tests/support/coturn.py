"""A real coturn on loopback for tests, configured by Parley's own renderer (plus allow-loopback-peers)."""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint

from parley.turn.settings import TurnSettings
from parley.turn.coturn import command, write_config
from parley.turn.credentials import mint_credential
from tests.support.processes import stop_process

SECRET = "coturn-test-secret-0123456789abcdef"


def udp_tcp_port_free(port: int) -> bool:
    """Whether ``port`` on 127.0.0.1 can be bound for both UDP and TCP right now."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind(("127.0.0.1", port))
            tcp.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False


def free_udp_tcp_port() -> int:
    for _ in range(100):
        port = random.randint(20_000, 40_000)
        if udp_tcp_port_free(port):
            return port
    raise RuntimeError("no free port")


_PEER_USAGE = re.compile(r"peer usage: realm=<[^>]*>, username=<([^>]*)>, rp=(\d+), rb=\d+, sp=(\d+)")


def relayed(log: str, user_suffix: str = "") -> bool:
    """Whether coturn's log reports a session (of a username ending in ``user_suffix``) that relayed over
    50 packets each way. coturn writes the line when the allocation ends: poll it with ``wait_relayed``."""
    return any(user.endswith(user_suffix) and int(rp) > 50 and int(sp) > 50 for user, rp, sp in _PEER_USAGE.findall(log))


def wait_relayed(read_log: Callable[[], str], user_suffix: str = "", timeout_s: float = 15.0) -> bool:
    """``relayed`` on the log as ``read_log`` returns it, polled until true or ``timeout_s`` has passed
    (blocking: from a coroutine, run it in a thread)."""
    deadline = time.monotonic() + timeout_s
    while not relayed(read_log(), user_suffix):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@dataclass
class Coturn:
    settings: TurnSettings
    process: subprocess.Popen
    log_path: Path

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.settings.port

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.process, 5)


class _Sink(asyncio.DatagramProtocol):
    pass


async def allocate(address: tuple[str, int], username: str, password: str) -> tuple[str, int]:
    """Make a real TURN allocation; return the relayed address. Raises ``stun.TransactionFailed`` if refused."""
    transport, _ = await create_turn_endpoint(_Sink, address, username, password, lifetime=60)
    try:
        return transport.get_extra_info("sockname")
    finally:
        transport.close()


def turn_settings(port: int, relay_from: int) -> TurnSettings:
    return TurnSettings(
        enabled=True, secret=SECRET, realm="parley-test", port=port, min_port=relay_from, max_port=relay_from + 199,
        allow_loopback_peers=True, credential_ttl_s=600,
    )


async def start_coturn(workdir: Path) -> Coturn:
    if shutil.which("turnserver") is None:
        pytest.fail("coturn is missing: `make test` installs it (apt-get install coturn)")
    settings = turn_settings(free_udp_tcp_port(), random.randrange(41_000, 60_000, 200))
    log_path = workdir / "coturn.log"
    config = write_config(settings, workdir / "turnserver.conf", log_file=str(log_path), pid_file=str(workdir / "turnserver.pid"))
    process = subprocess.Popen(command(config), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Coturn(settings, process, log_path)
    credential = mint_credential(SECRET, "probe", 60)
    deadline = time.monotonic() + 10
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"turnserver exited with {process.returncode}:\n{server.log()[-2000:]}")
        try:
            await allocate(server.address, credential.username, credential.password)
            return server
        except (stun.TransactionFailed, stun.TransactionTimeout, ConnectionError, OSError):
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"coturn did not allocate within 10 s:\n{server.log()[-2000:]}")
            await asyncio.sleep(0.2)
