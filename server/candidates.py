"""Which trickled ICE candidates the server will send connectivity checks to.

A client's candidates are addresses the server then sends STUN packets to. Addresses that can never
be a peer (unspecified, multicast, broadcast, reserved, port 0) are refused, so a token holder cannot
point the server's checks at them; mDNS names (``*.local``) are left to aioice, which resolves them.
"""

from __future__ import annotations

import ipaddress

from parley.core.errors import SignalingError


def check_candidate_address(host: str, port: int) -> None:
    """Raise ``SignalingError(invalid_candidate)`` for an address no ICE peer can have."""
    if not 1 <= port <= 65535:
        raise SignalingError(f"candidate port {port} is not a usable port", code="invalid_candidate")
    if host.endswith(".local"):
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError as exc:
        raise SignalingError(f"candidate address {host[:64]!r} is neither an IP address nor an mDNS name", code="invalid_candidate") from exc
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    unusable = address.is_unspecified or address.is_multicast or (
        isinstance(address, ipaddress.IPv4Address) and (address == ipaddress.IPv4Address("255.255.255.255") or address in _RESERVED_V4)
    )
    if unusable:
        raise SignalingError(f"candidate address {host} cannot be an ICE peer", code="invalid_candidate")


_RESERVED_V4 = ipaddress.ip_network("240.0.0.0/4")
