"""Loopback helpers: a free TCP port for child servers (the embedded LLM, benchmark servers, tests), and
whether a host name or address is this machine only."""

from __future__ import annotations

import ipaddress
import socket


def free_loopback_port() -> int:
    """A port nothing listens on right now (another process may still take it before you do)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (an address or name to listen on, or a Host header's host) is this machine only."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_loopback_port_run(count: int, attempts: int = 50) -> int:
    """A port P such that P … P+count-1 are all free right now (``parley serve --workers`` uses the
    ports after its public one)."""
    for _ in range(attempts):
        base = free_loopback_port()
        if base + count > 65536:
            continue
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise OSError(f"no {count} consecutive free loopback ports found")
