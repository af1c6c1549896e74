"""ICE host-address control: aioice never offers loopback addresses, which single-machine set-ups need."""

from __future__ import annotations

import ipaddress
from typing import Callable

import aioice.ice

_original: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses


def use_host_addresses(addresses: list[str]) -> None:
    """Offer exactly ``addresses`` as ICE host candidates (process-wide); an empty list restores aioice's own choice."""
    if not addresses:
        aioice.ice.get_host_addresses = _original
        return
    parsed = [ipaddress.ip_address(a) for a in addresses]  # raises ValueError on a typo

    def fixed(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [str(ip) for ip in parsed if (ip.version == 4 and use_ipv4) or (ip.version == 6 and use_ipv6)]

    aioice.ice.get_host_addresses = fixed
