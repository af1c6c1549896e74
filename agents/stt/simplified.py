"""Whisper writes Mandarin in traditional characters now and then: convert to simplified (OpenCC t2s)."""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

from parley.core.errors import ModelLoadError


@lru_cache(maxsize=1)
def _converter() -> Callable[[str], str]:
    try:
        from opencc_purepy import OpenCC
    except ImportError as exc:
        raise ModelLoadError("Mandarin transcripts need opencc-purepy: pip install opencc-purepy==1.5.0") from exc
    return OpenCC("t2s").convert


def to_simplified(text: str) -> str:
    """``text`` with traditional Chinese characters replaced by simplified ones (other text unchanged)."""
    return _converter()(text) if text else text
