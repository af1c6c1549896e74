"""A free TCP port on loopback, for child servers (the embedded LLM, benchmark servers, tests)."""

from __future__ import annotations

import socket


def free_loopback_port() -> int:
    """A port nothing listens on right now (another process may still take it before you do)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
