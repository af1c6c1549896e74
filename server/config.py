"""Typed configuration: defaults, then a TOML file, then ``PARLEY_*`` environment overrides, then CLI flags.

Each package owns its sections (``agents.settings``, ``signaling.settings``, ``turn.settings``); this
module composes them into ``Settings`` and loads it.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from parley.agents.settings import PipelineSettings
from parley.core.aiortc_hooks import HookSettings
from parley.core.errors import ConfigError
from parley.core.net import is_loopback_host
from parley.core.settings import Section
from parley.server.presets import preset_defaults
from parley.signaling.settings import AuthSettings, HttpSettings, RoomSettings
from parley.turn.settings import TurnSettings

ENV_PREFIX = "PARLEY_"


class IceSettings(Section):
    # aioice skips loopback addresses; list them here to offer them (tests, single-machine demos).
    host_addresses: list[str] = []
    # With host_addresses empty: also offer 127.0.0.1, for a browser on the same machine.
    include_loopback: bool = True
    stun_urls: list[str] = []


class MediaSettings(Section):
    # Packets aiortc buffers before decoding the caller's audio (its default 4 = 80 ms of added delay).
    audio_jitter_prefetch: int = Field(1, ge=0, le=8)


class ClusterSettings(Section):
    """Several ``parley serve`` processes (nodes) sharing rooms through Redis (``parley serve --workers N``
    sets these for its workers)."""

    # redis://host:6379/0 reached by every node. Empty: one process; rooms live in it alone.
    redis_url: str = ""
    node_id: str = ""  # empty: <hostname>-<pid>
    # How clients reach this node (its page, REST API and /ws), e.g. https://node2.example.org:8443.
    # Empty: http(s)://http.host:http.port. Joins for its rooms are redirected here.
    public_url: str = ""
    key_prefix: str = Field("parley", pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    heartbeat_s: float = Field(1.0, gt=0, le=30)
    # A node silent this long is taken for dead: its rooms are freed and re-created where callers rejoin.
    node_ttl_s: float = Field(5.0, gt=0, le=300)
    # With --workers: the port every worker also listens on (SO_REUSEPORT); 0: none (workers set it).
    shared_port: int = Field(0, ge=0, le=65535)


class Settings(PipelineSettings):
    """Every section of ``parley.toml``: the pipeline's (agents), the edge's (signaling), TURN, ICE, media."""

    # cpu: embedded models from PyPI. gpu: CUDA Whisper, a vLLM URL, a Fish Speech server (server/presets.py).
    profile: Literal["cpu", "gpu"] = "cpu"
    http: HttpSettings = HttpSettings()
    auth: AuthSettings = AuthSettings()
    rooms: RoomSettings = RoomSettings()
    ice: IceSettings = IceSettings()
    turn: TurnSettings = TurnSettings()
    media: MediaSettings = MediaSettings()
    cluster: ClusterSettings = ClusterSettings()
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _dev_mode_stays_local(self) -> "Settings":
        if self.auth.dev_mode and not self.auth.dev_public and not is_loopback_host(self.http.host):
            raise ValueError(
                f"dev mode on http.host {self.http.host!r} would let anyone who reaches it mint join tokens and "
                "read the admin key from the log; serve on 127.0.0.1 (and tunnel), configure auth.api_key and "
                "mint tokens from your backend, or accept the exposure with --dev-public (auth.dev_public = true)"
            )
        return self

    @model_validator(mode="after")
    def _cluster_shares_its_secret(self) -> "Settings":
        cluster = self.cluster
        if cluster.redis_url and not self.auth.token_secret:
            raise ValueError(
                "cluster.redis_url is set but auth.token_secret is not: every node must verify the others' join "
                "tokens, so give them one shared secret (32+ characters)"
            )
        if cluster.heartbeat_s * 2 > cluster.node_ttl_s:
            raise ValueError(f"cluster.node_ttl_s ({cluster.node_ttl_s:g}) must be at least twice cluster.heartbeat_s ({cluster.heartbeat_s:g})")
        return self


def hook_settings(settings: Settings) -> HookSettings:
    """The aiortc/aioice hooks this configuration asks for (see ``parley.core.aiortc_hooks``)."""
    return HookSettings(
        host_addresses=tuple(settings.ice.host_addresses), include_loopback=settings.ice.include_loopback,
        audio_jitter_prefetch=settings.media.audio_jitter_prefetch,
    )


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """Turn ``PARLEY_LLM__MODEL=x`` into ``{"llm": {"model": "x"}}``."""
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "PARLEY_CONFIG":
            continue
        path = name[len(ENV_PREFIX):].lower().split("__")
        value: Any = raw  # pydantic coerces numbers and booleans; lists and tables come as JSON
        if raw.strip()[:1] in ("[", "{"):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{name} is not valid JSON: {exc}") from exc
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_settings(
    path: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build the settings from defaults, an optional TOML file, the environment and explicit overrides."""
    environ = dict(os.environ) if environ is None else environ
    data: dict[str, Any] = {}
    path = path or (Path(environ["PARLEY_CONFIG"]) if environ.get("PARLEY_CONFIG") else None)
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    data = _merge(data, _env_overrides(environ))
    data = _merge(data, overrides or {})
    profile = data.get("profile", "cpu")
    try:
        data = _merge(preset_defaults(profile), data) if isinstance(profile, str) else data
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from exc
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from exc
