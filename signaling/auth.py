"""Join tokens (JWT HS256: room, identity, expiry) and the admin API key check."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

import jwt

from parley.core.errors import AuthError

ALGORITHM = "HS256"
ISSUER = "parley"


@dataclass(frozen=True)
class JoinGrant:
    """What a valid join token allows: this identity, in this room, until ``expires_at``."""

    room: str
    identity: str
    name: str
    expires_at: int


class TokenAuthority:
    """Mints and verifies join tokens with one shared secret."""

    def __init__(self, secret: str, default_ttl_s: int, max_ttl_s: int) -> None:
        self._secret = secret or secrets.token_urlsafe(32)
        self.default_ttl_s = default_ttl_s
        self.max_ttl_s = max_ttl_s

    def mint(self, room: str, identity: str, name: str | None = None, ttl_s: int | None = None) -> tuple[str, int]:
        """Return a signed token and its expiry (Unix time); the lifetime is capped at ``max_ttl_s``."""
        now = int(time.time())
        expires_at = now + min(ttl_s or self.default_ttl_s, self.max_ttl_s)
        claims = {"iss": ISSUER, "sub": identity, "room": room, "name": name or identity, "iat": now, "exp": expires_at}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), expires_at

    def verify(self, token: str | None, room: str | None = None) -> JoinGrant:
        """Check signature, expiry and (when given) the room; raise ``AuthError`` with a precise code."""
        if not token:
            raise AuthError("a join token is required: /ws?token=… or join.token", code="token_missing")
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], issuer=ISSUER,
                options={"require": ["exp", "sub", "room", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("the join token has expired", code="token_expired") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError("the join token's signature is not valid", code="token_invalid") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(f"the join token is not valid: {exc}", code="token_invalid") from exc
        if not isinstance(claims.get("room"), str) or not isinstance(claims.get("sub"), str):
            raise AuthError("the join token lacks a room or identity", code="token_invalid")
        if room is not None and room != claims["room"]:
            raise AuthError(f"the join token is for another room, not {room!r}", code="token_wrong_room")
        return JoinGrant(claims["room"], claims["sub"], str(claims.get("name") or claims["sub"]), int(claims["exp"]))


def check_api_key(configured: str, authorization: str | None) -> None:
    """Admin calls carry ``Authorization: Bearer <api key>``; compared in constant time."""
    if not configured:
        raise AuthError("the admin API is disabled: set auth.api_key", code="unauthorized")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise AuthError("send the admin API key as 'Authorization: Bearer <key>'", code="unauthorized")
    if not hmac.compare_digest(given.strip().encode(), configured.encode()):
        raise AuthError("the API key is not valid", code="unauthorized")
