"""Per-connection message rate limit (a token bucket), the caps on sockets that have not joined, and the WebSocket Origin check."""

from __future__ import annotations

import time
from typing import Iterable
from urllib.parse import urlsplit

from parley.signaling.settings import HttpSettings


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; ``take`` spends one if there is one."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self._tokens = float(burst)
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


def origin_allowed(origin: str | None, host: str, allowed: list[str]) -> bool:
    """No Origin (not a browser), the server's own origin, or one on the allow-list."""
    if not origin:
        return True
    if "*" in allowed or origin.rstrip("/") in {a.rstrip("/") for a in allowed}:
        return True
    return urlsplit(origin).netloc.lower() == host.lower()


def unjoined_socket_refusal(sockets: Iterable[tuple[str, bool]], address: str, http: HttpSettings) -> str | None:
    """Why a new WebSocket from ``address`` is refused, or None. ``sockets``: (client address, joined) of the open ones.

    Sockets that have not joined hold nothing but cost memory and a task: at most
    ``http.max_unjoined_sockets`` of them, and ``http.max_unjoined_per_address`` from one address.
    """
    waiting = [peer for peer, joined in sockets if not joined]
    if len(waiting) >= http.max_unjoined_sockets:
        return f"{len(waiting)} sockets are waiting to join (http.max_unjoined_sockets); try again shortly"
    mine = sum(1 for peer in waiting if peer == address)
    if mine >= http.max_unjoined_per_address:
        return f"{mine} sockets from your address are waiting to join (http.max_unjoined_per_address)"
    return None
