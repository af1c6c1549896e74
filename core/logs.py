"""Logging set-up: one line per event, with call ids carried by ``LoggerAdapter`` extras."""

from __future__ import annotations

import logging
from typing import Any


class _ContextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ctx = getattr(record, "ctx", None)
        record.ctx_text = f" [{ctx}]" if ctx else ""
        return super().format(record)


def setup_logging(level: str = "INFO") -> None:
    """Configure the root logger for the CLI."""
    handler = logging.StreamHandler()
    handler.setFormatter(_ContextFormatter("%(asctime)s %(levelname)s %(name)s%(ctx_text)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aioice", "aiortc", "aiohttp.access", "faster_whisper"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class CallLogger(logging.LoggerAdapter):
    """A logger that prefixes every line with a call's ids (room, participant, turn)."""

    def __init__(self, logger: logging.Logger, **ids: Any) -> None:
        super().__init__(logger, {"ctx": " ".join(f"{k}={v}" for k, v in ids.items())})

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs.setdefault("extra", {}).update(self.extra)
        return msg, kwargs
