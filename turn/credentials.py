"""TURN REST API credentials (username ``expiry:identity``, password base64(HMAC-SHA1(secret, username)))
and the ICE server list handed to clients."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

from parley.turn.settings import TurnSettings


@dataclass(frozen=True)
class TurnCredential:
    username: str
    password: str
    expires_at: int


def mint_credential(secret: str, identity: str, ttl_s: int, now: float | None = None) -> TurnCredential:
    """A time-limited TURN credential coturn accepts with ``use-auth-secret`` until ``expires_at``."""
    expires_at = int(now if now is not None else time.time()) + ttl_s
    username = f"{expires_at}:{identity.replace(':', '_')}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredential(username, base64.b64encode(digest).decode(), expires_at)


def turn_urls(turn: TurnSettings) -> list[str]:
    """TURN over UDP and TCP, and over TLS when a certificate is configured."""
    host = f"[{turn.public_host}]" if ":" in turn.public_host else turn.public_host
    urls = [f"turn:{host}:{turn.port}?transport=udp", f"turn:{host}:{turn.port}?transport=tcp"]
    if turn.cert is not None:
        urls.append(f"turns:{host}:{turn.tls_port}?transport=tcp")
    return urls


@dataclass(frozen=True)
class IceServerEntry:
    urls: list[str]
    username: str | None = None
    credential: str | None = None


def ice_server_entries(stun_urls: list[str], turn: TurnSettings, identity: str) -> list[IceServerEntry]:
    """The STUN servers given, then Parley's TURN server with a fresh credential for ``identity``."""
    entries = [IceServerEntry(urls=[url]) for url in stun_urls]
    if turn.enabled:
        credential = mint_credential(turn.secret, identity, turn.credential_ttl_s)
        entries.append(IceServerEntry(turn_urls(turn), credential.username, credential.password))
    return entries
