"""Settings of the HTTP/WebSocket edge: listening, limits and deadlines, auth, rooms."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from parley.core.settings import Section


class HttpSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    cert: Path | None = None
    key: Path | None = None
    max_calls: int = Field(16, ge=1)
    # Browser pages allowed to open the WebSocket, as "https://app.example.org" ("*": any). The
    # server's own origin is always allowed; clients that send no Origin (apps, bots) are too.
    allowed_origins: list[str] = []
    # Per WebSocket: messages per second on average, and the burst allowed above that.
    ws_rate_per_s: float = Field(20.0, gt=0)
    ws_burst: int = Field(100, ge=1)
    # Deadlines of a call's set-up: a socket must send `join` within join_timeout_s, then its offer
    # within offer_timeout_s, then ICE/DTLS must connect within connect_timeout_s; a server offer
    # must be answered within renegotiation_timeout_s. Past any of them the socket is closed.
    join_timeout_s: float = Field(10.0, gt=0)
    offer_timeout_s: float = Field(15.0, gt=0)
    connect_timeout_s: float = Field(20.0, gt=0)
    renegotiation_timeout_s: float = Field(10.0, gt=0)
    # Sockets that have not joined yet: at most this many in all, and from one client address.
    max_unjoined_sockets: int = Field(64, ge=1)
    max_unjoined_per_address: int = Field(8, ge=1)
    # Messages queued for one client that reads too slowly; past it the socket is closed.
    max_outbox_messages: int = Field(512, ge=16)
    # Graceful shutdown (SIGTERM): joins are refused, every client gets server_shutdown with this
    # retry hint, replies being spoken may finish for up to shutdown_grace_s, then the process exits 0.
    shutdown_grace_s: float = Field(10.0, ge=0)
    shutdown_retry_after_s: float = Field(5.0, ge=0)
    # Host headers this server answers (DNS-rebinding guard), e.g. ["parley.example.org"]. Empty:
    # any, except in dev mode on a loopback address, where only loopback names are answered.
    allowed_hosts: list[str] = []


class AuthSettings(Section):
    # Dev mode (``parley serve --dev``, what ``make run`` uses): a default room exists and the bundled
    # page gets join tokens from POST /api/v1/dev/token without an API key. Never on a public host.
    dev_mode: bool = False
    # Dev mode refuses to start on a non-loopback http.host (anyone who reaches the port could mint
    # tokens) unless this is set (`parley serve --dev-public`): a LAN demo you accept to expose.
    dev_public: bool = False
    # Bearer key for the admin REST API (rooms, tokens). Empty: the admin API answers 401 (dev mode
    # generates one and logs it).
    api_key: str = Field("", pattern=r"^$|^.{16,}$")  # at least 16 characters when set
    # HS256 secret for join tokens. Empty: a random one per start (tokens die with the process).
    token_secret: str = Field("", pattern=r"^$|^.{32,}$")  # at least 32 characters when set
    token_ttl_s: int = Field(3600, ge=10)
    max_token_ttl_s: int = Field(24 * 3600, ge=10)


class RoomSettings(Section):
    max_rooms: int = Field(100, ge=1)
    # People per room (the agent does not count).
    max_participants: int = Field(8, ge=1, le=64)
    # The room dev mode creates, and the one the bundled page joins.
    default_room: str = "default"
