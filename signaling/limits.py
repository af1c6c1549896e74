"""Per-connection message rate limit (a token bucket) and the WebSocket Origin check."""

from __future__ import annotations

import time
from urllib.parse import urlsplit


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
