"""The ``parley`` command line: ``parley serve``, ``parley models``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from parley.server.config import Settings, hook_settings, load_settings
from parley.core.aiortc_hooks import LibraryMismatchError
from parley.core.errors import ConfigError, ModelLoadError
from parley.core.logs import setup_logging

log = logging.getLogger("parley")
# Left out of the configuration printed at start (the agent's prompt is long; the rest are secrets).
SECRET_FIELDS: dict[str, Any] = {
    "agent": True, "auth": {"api_key", "token_secret"}, "llm": {"api_key"}, "tts": {"api_key"}, "turn": {"secret"},
}


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    flags = {
        "host": ("http", "host"), "port": ("http", "port"), "cert": ("http", "cert"), "key": ("http", "key"),
        "llm_model": ("llm", "model"), "llm_url": ("llm", "url"), "stt_model": ("stt", "model"),
        "voice": ("tts", "voice"), "ice_host_address": ("ice", "host_addresses"), "log_level": ("log_level",),
        "dev": ("auth", "dev_mode"), "dev_public": ("auth", "dev_public"), "profile": ("profile",),
        "redis_url": ("cluster", "redis_url"),
    }
    for attr, path in flags.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    if getattr(args, "llm_url", None):
        tree.setdefault("llm", {})["backend"] = "openai"
    return tree


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML config file (default: $PARLEY_CONFIG, if set)")
    parser.add_argument(
        "--profile", choices=("cpu", "gpu"),
        help="cpu (default): embedded models from PyPI; gpu: faster-whisper on CUDA, vLLM at llm.url, Fish Speech at tts.url",
    )
    parser.add_argument("--llm-model", help="embedded LLM: qwen2.5-1.5b (default), qwen2.5-0.5b, smollm2-135m or a .gguf path")
    parser.add_argument("--llm-url", help="use an OpenAI-compatible server instead (e.g. vLLM at http://127.0.0.1:8000/v1)")
    parser.add_argument("--stt-model", help="Whisper model: tiny.en (default), base, or a CTranslate2 directory")
    parser.add_argument("--voice", help="TTS voice (hibari: heart, emma, fenrir, fable, kore)")
    parser.add_argument("--log-level", help="DEBUG, INFO (default), WARNING")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parley", description="Parley: a self-hosted real-time voice AI media server."
    )
    parser.add_argument("--version", action="version", version="parley 0.1.0")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the web page, signaling and the voice agent")
    _add_common(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="HTTP port (default 8080)")
    serve.add_argument("--cert", type=Path, help="TLS certificate (PEM): browsers only give the mic to https or 127.0.0.1")
    serve.add_argument("--key", type=Path, help="TLS private key (PEM)")
    serve.add_argument(
        "--dev", action="store_true", default=None,
        help="dev mode (what `make run` uses): a default room, and join tokens for the bundled page without an API key; "
        "loopback addresses only, unless --dev-public",
    )
    serve.add_argument(
        "--dev-public", action="store_true", default=None,
        help="allow dev mode on a non-loopback --host: anyone who reaches the port can then join the dev rooms",
    )
    serve.add_argument(
        "--workers", type=int, metavar="N",
        help="run N node processes sharing rooms through Redis and the HTTP port (one per core is a good start); "
        "a private redis-server is started unless cluster.redis_url is set",
    )
    serve.add_argument("--redis-url", help="join a cluster of Parley nodes through this Redis (cluster.redis_url)")
    serve.add_argument(
        "--ice-host-address", action="append", metavar="IP",
        help="offer this address as an ICE host candidate (repeatable; needed for 127.0.0.1)",
    )
    models = sub.add_parser("models", help="prepare (assemble and cache) and load-check the configured models")
    _add_common(models)
    config = sub.add_parser("config", help="print the effective configuration as JSON")
    config.add_argument("--config", type=Path)
    config.add_argument("--profile", choices=("cpu", "gpu"))
    turn = sub.add_parser("turn", help="run coturn in the foreground, configured from Parley's [turn] settings")
    turn.add_argument("--config", type=Path, help="TOML config file (default: $PARLEY_CONFIG, if set)")
    turn.add_argument("--print-config", action="store_true", help="print the generated turnserver.conf (secret masked) and exit")
    sub.add_parser("bench", help="measure voice-to-voice latency and capacity (see `parley bench --help`)", add_help=False)
    return parser


async def _load_models(settings: Settings):
    from parley.agents.runtime import AgentModels

    return await AgentModels.load(settings)


async def _serve(settings: Settings) -> None:
    from parley.core import aiortc_hooks
    from parley.server.app import create_app, drain

    aiortc_hooks.install(hook_settings(settings))
    models = None if settings.agent.mode == "echo" else await _load_models(settings)
    ssl_context = None
    if settings.http.cert or settings.http.key:
        if not (settings.http.cert and settings.http.key):
            raise ConfigError("TLS needs both --cert and --key")
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(settings.http.cert, settings.http.key)
    app = create_app(settings, models)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.http.host, settings.http.port, ssl_context=ssl_context)
    await site.start()
    scheme = "https" if ssl_context else "http"
    if settings.cluster.shared_port:  # one of `--workers`: the public port is every worker's
        await web.TCPSite(runner, settings.http.host, settings.cluster.shared_port, ssl_context=ssl_context, reuse_port=True).start()
        log.info("worker %s is ready on port %d (and the shared port %d)", settings.cluster.node_id, settings.http.port, settings.cluster.shared_port)
    else:
        log.info("Parley is ready: open %s://%s:%d", scheme, settings.http.host, settings.http.port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        await drain(app, settings.http.shutdown_grace_s)
    finally:
        await runner.cleanup()
        if models is not None:
            await models.close()


async def _check_models(settings: Settings) -> None:
    models = await _load_models(settings)
    await models.close()
    log.info("all models are ready")


def _turn(settings: Settings, print_only: bool) -> int:
    from parley.turn.coturn import render_config
    from parley.turn.foreground import run_foreground

    try:
        if print_only:
            print(render_config(settings.turn).replace(settings.turn.secret, "<turn.secret>"), end="")
            return 0
        config = settings.cache_dir / "turnserver.conf"
        setup_logging(settings.log_level)
        log.info("starting coturn with %s (TURN REST API credentials, realm %s)", config, settings.turn.realm)
        return run_foreground(settings.turn, config)
    except ConfigError as exc:
        print(f"parley turn: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        # The bench drives a Parley server from outside (it sits above this package), so it runs as its
        # own program: this process becomes `python -m parley.bench` (same PID, signals, exit status).
        os.execv(sys.executable, [sys.executable, "-m", "parley.bench", *argv[1:]])
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config, _overrides(args))
    except ConfigError as exc:
        print(f"parley: {exc}", file=sys.stderr)
        return 2
    if args.command == "config":
        print(settings.model_dump_json(indent=2, exclude=SECRET_FIELDS))
        return 0
    if args.command == "turn":
        return _turn(settings, args.print_config)
    setup_logging(settings.log_level)
    log.info("configuration: %s", settings.model_dump_json(exclude=SECRET_FIELDS))
    if args.command == "serve" and (args.workers or 1) > 1:
        from parley.server.workers import run_workers

        try:
            return run_workers(settings, args.workers)
        except ConfigError as exc:
            log.error("configuration error: %s", exc)
            return 2
    return run(settings, serve=args.command == "serve")


def run(settings: Settings, *, serve: bool = True) -> int:
    """Serve (or, with ``serve=False``, load-check the models) and map failures to exit statuses:
    3 a model or library, 2 the configuration, 1 the system (a port taken)."""
    try:
        if serve:
            asyncio.run(_serve(settings))
        else:
            asyncio.run(_check_models(settings))
    except ModelLoadError as exc:
        log.error("a model failed to load: %s", exc)
        return 3
    except LibraryMismatchError as exc:
        log.error("%s", exc)
        return 3
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return 2
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    except KeyboardInterrupt:
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
