"""Typed configuration: defaults, then a TOML file, then ``PARLEY_*`` environment overrides, then CLI flags."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from parley.server.profiles import profile_defaults

from parley.server.errors import ConfigError

ENV_PREFIX = "PARLEY_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpSettings(_Section):
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


class AuthSettings(_Section):
    # Dev mode (``parley serve --dev``, what ``make run`` uses): a default room exists and the bundled
    # page gets join tokens from POST /api/v1/dev/token without an API key. Never on a public host.
    dev_mode: bool = False
    # Bearer key for the admin REST API (rooms, tokens). Empty: the admin API answers 401 (dev mode
    # generates one and logs it).
    api_key: str = ""
    # HS256 secret for join tokens. Empty: a random one per start (tokens die with the process).
    token_secret: str = Field("", pattern=r"^$|^.{32,}$")  # at least 32 characters when set
    token_ttl_s: int = Field(3600, ge=10)
    max_token_ttl_s: int = Field(24 * 3600, ge=10)


class RoomSettings(_Section):
    max_rooms: int = Field(100, ge=1)
    # People per room (the agent does not count).
    max_participants: int = Field(8, ge=1, le=64)
    # The room dev mode creates, and the one the bundled page joins.
    default_room: str = "default"


class IceSettings(_Section):
    # aioice skips loopback addresses; list them here to offer them (tests, single-machine demos).
    host_addresses: list[str] = []
    # With host_addresses empty: also offer 127.0.0.1, for a browser on the same machine.
    include_loopback: bool = True
    stun_urls: list[str] = []


class TurnSettings(_Section):
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


class MediaSettings(_Section):
    # Packets aiortc buffers before decoding the caller's audio (its default 4 = 80 ms of added delay).
    audio_jitter_prefetch: int = Field(1, ge=0, le=8)


class VadSettings(_Section):
    backend: str = "silero"
    threshold: float = Field(0.5, gt=0, lt=1)
    min_speech_ms: int = Field(200, ge=0)
    endpoint_silence_ms: int = Field(450, ge=100)
    preroll_ms: int = Field(250, ge=0)
    max_utterance_s: float = Field(20.0, gt=1)
    # A blip shorter than min_speech_ms is dropped once this much silence follows it.
    discard_silence_ms: int = Field(200, ge=32)
    # Caller speech over the agent must last this long (and carry real words) to interrupt it.
    barge_in_min_speech_ms: int = Field(250, ge=0)
    # Re-transcribe the growing utterance this often for interim transcripts (0: off).
    interim_interval_s: float = Field(0.7, ge=0)


class SttSettings(_Section):
    backend: str = "faster-whisper"
    model: str = "tiny.en"  # tiny.en | base | a local CTranslate2 model directory
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    compute_type: str = "int8"
    language: str = "en"
    beam_size: int = Field(1, ge=1)
    threads: int = Field(2, ge=1)
    # Cross-call batching: utterances from different calls that end within batch_window_ms (or that
    # wait while a pass runs) are transcribed in one model pass, up to max_batch at a time.
    batching: bool = True
    batch_window_ms: float = Field(10.0, ge=0, le=1000)
    max_batch: int = Field(8, ge=1, le=256)


class LlmSettings(_Section):
    backend: Literal["embedded", "openai"] = "embedded"
    model: str = "qwen2.5-1.5b"  # embedded: qwen2.5-1.5b | qwen2.5-0.5b | smollm2-135m | a .gguf path
    url: str = ""  # openai: base URL such as http://127.0.0.1:8000/v1
    api_key: str = ""
    max_tokens: int = Field(120, ge=1)
    temperature: float = Field(0.3, ge=0, le=2)
    threads: int = Field(2, ge=1)
    context: int = Field(4096, ge=256)
    parallel: int = Field(4, ge=1)
    timeout_s: float = Field(30.0, gt=0)
    # Extra fields for every request, e.g. {"chat_template_kwargs": {"enable_thinking": false}} for Qwen3 on vLLM.
    extra_body: dict[str, Any] = Field(default_factory=dict)


class TtsSettings(_Section):
    backend: str = "hibari"  # hibari (embedded CPU) | fish-speech (a Fish Speech API server, GPU)
    voice: str = "heart"  # hibari: heart | emma | fenrir | fable | kore; fish-speech: a reference_id or "default"
    gain_db: float = 6.0
    threads: int = Field(1, ge=1)
    # fish-speech only: the server, an optional reference clip to clone (with its transcript), its output rate.
    url: str = ""
    api_key: str = ""
    reference_audio: str = ""
    reference_text: str = ""
    sample_rate: int = Field(44_100, ge=8000)
    timeout_s: float = Field(30.0, gt=0)


def _default_backchannels() -> dict[str, list[str]]:
    from parley.agents.backchannel import DEFAULT_BACKCHANNELS

    return {lang: list(words) for lang, words in DEFAULT_BACKCHANNELS.items()}


class AgentSettings(_Section):
    # Words that, said alone over the agent, do not interrupt it, per language (stt.language picks).
    backchannels: dict[str, list[str]] = Field(default_factory=_default_backchannels)
    # voice: the agent answers. echo: send the caller's audio straight back (transport floor; no models).
    mode: Literal["voice", "echo"] = "voice"
    # streaming: VAD endpointing, clause-by-clause TTS. naive: fixed STT chunks, TTS after the whole
    # LLM reply — the design most tutorials show, kept as the benchmark's baseline.
    pipeline: Literal["streaming", "naive"] = "streaming"
    naive_chunk_s: float = Field(1.0, gt=0.1)
    # Speak the first chunk of a reply after this many words even without punctuation (0: wait for a
    # clause). Measured here: p50 −0.14 s, p95 −0.5 s voice-to-voice with the 1.5B LLM on 2 cores.
    first_chunk_max_words: int = Field(6, ge=0)
    system_prompt: str = (
        "You are Parley, a friendly voice assistant. You are speaking out loud, so answer in one or "
        "two short, plain sentences, with no lists, markdown or emoji."
    )
    max_history_turns: int = Field(8, ge=0)
    # Longest wait for one transcription / one synthesized chunk before the turn fails (stt_failed /
    # tts_failed) and the agent goes back to listening.
    stt_timeout_s: float = Field(15.0, gt=0)
    tts_timeout_s: float = Field(15.0, gt=0)
    # The agent's name in rooms: people address it by this name, and transcripts show it.
    name: str = "Parley"
    # always: answer every utterance. addressed: only utterances that say the agent's name. auto:
    # always with one person in the room, addressed with two or more.
    reply_policy: Literal["always", "addressed", "auto"] = "auto"


class Settings(_Section):
    # cpu: embedded models from PyPI. gpu: CUDA Whisper, a vLLM URL, a Fish Speech server (server/profiles.py).
    profile: Literal["cpu", "gpu"] = "cpu"
    http: HttpSettings = HttpSettings()
    auth: AuthSettings = AuthSettings()
    rooms: RoomSettings = RoomSettings()
    ice: IceSettings = IceSettings()
    turn: TurnSettings = TurnSettings()
    media: MediaSettings = MediaSettings()
    vad: VadSettings = VadSettings()
    stt: SttSettings = SttSettings()
    llm: LlmSettings = LlmSettings()
    tts: TtsSettings = TtsSettings()
    agent: AgentSettings = AgentSettings()
    cache_dir: Path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "parley"
    log_level: str = "INFO"
    inference_threads: int = Field(2, ge=1)


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
        data = _merge(profile_defaults(profile), data) if isinstance(profile, str) else data
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from exc
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from exc
