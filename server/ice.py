"""ICE host-address control: aioice never offers loopback addresses, which single-machine set-ups need."""

from __future__ import annotations

import ipaddress
from typing import Callable

import aioice.ice

_original: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses


def use_host_addresses(addresses: list[str], *, include_loopback: bool = False) -> None:
    """Choose the ICE host candidates offered by every peer connection of this process.

    ``addresses`` non-empty: offer exactly those. Empty: aioice's own choice (every non-loopback
    interface), plus 127.0.0.1 when ``include_loopback`` so a browser on the same machine can connect.
    """
    fixed = [ipaddress.ip_address(a) for a in addresses]  # raises ValueError on a typo

    def choose(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        if fixed:
            chosen = fixed
        else:
            chosen = [ipaddress.ip_address(a.split("%")[0]) for a in _original(use_ipv4, use_ipv6)]
            if include_loopback:
                chosen.append(ipaddress.ip_address("127.0.0.1"))
        return [str(ip) for ip in chosen if (ip.version == 4 and use_ipv4) or (ip.version == 6 and use_ipv6)]

    aioice.ice.get_host_addresses = choose


_original_connect = aioice.ice.Connection.connect


async def _connect_then_respect_close(self: aioice.ice.Connection) -> None:
    await _original_connect(self)
    if getattr(self, "_closing", False) and self._query_consent_task is not None:
        # close() ran while the check list was completing: aioice would start consent checks on a
        # closed connection, a task that then sleeps forever (one leaked per short call, measured).
        self._query_consent_task.cancel()
        self._query_consent_task = None


def fix_consent_after_close() -> None:
    """Patch aioice so a connection closed during its ICE handshake does not leave a task behind."""
    aioice.ice.Connection.connect = _connect_then_respect_close  # type: ignore[method-assign]
