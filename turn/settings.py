"""Settings of the TURN relay (coturn) and of the credentials Parley mints for it."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from parley.core.settings import Section


class TurnSettings(Section):
    """coturn with TURN REST API credentials (``use-auth-secret``); see ``parley turn`` and the README."""

    enabled: bool = False
    # Shared with coturn (static-auth-secret). Required when enabled; 32+ characters.
    secret: str = Field("", pattern=r"^$|^.{32,}$")
    realm: str = "parley"
    # Address clients use to reach coturn (a public IP or DNS name in production).
    public_host: str = "127.0.0.1"
    port: int = Field(3478, ge=1, le=65535)
    tls_port: int = Field(5349, ge=1, le=65535)
    # PEM files for TURN over TLS (turns:); without them only turn: over UDP and TCP is offered.
    cert: Path | None = None
    key: Path | None = None
    credential_ttl_s: int = Field(3600, ge=60)
    # coturn's own addresses: where it listens, which address it relays from, and the public IP
    # it advertises when it sits behind 1:1 NAT (cloud VMs): external-ip = public/private.
    listening_ips: list[str] = ["127.0.0.1"]
    relay_ip: str = "127.0.0.1"
    external_ip: str = ""
    min_port: int = Field(49160, ge=1024, le=65535)
    max_port: int = Field(49400, ge=1024, le=65535)
    # Peers in the denied private ranges coturn may still relay to: Parley's own private address
    # when coturn and Parley share a host or a LAN (media flows client → coturn → Parley).
    allowed_peer_ips: list[str] = []
    # Test-only: relay to loopback peers. coturn refuses them by default, and so should production.
    allow_loopback_peers: bool = False
    # Where `parley turn`'s coturn logs: "stdout" (relayed through `parley turn`), or a file path, which
    # coturn reopens after a SIGHUP (send it to `parley turn`: it forwards it), for logrotate.
    log_file: str = "stdout"
    # The server's own peer connections use the TURN server too (for media servers behind NAT).
    server_uses_turn: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> "TurnSettings":
        if self.enabled and not self.secret:
            raise ValueError("turn.enabled needs turn.secret (32+ characters, shared with coturn)")
        if (self.cert is None) != (self.key is None):
            raise ValueError("turn.cert and turn.key go together")
        if self.min_port >= self.max_port:
            raise ValueError("turn.min_port must be below turn.max_port")
        return self
