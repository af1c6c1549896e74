"""Character error rate for Chinese (punctuation and spaces ignored)."""

from __future__ import annotations

import re

_KEEP = re.compile(r"[\u3400-\u9fff0-9A-Za-z]")


def hanzi(text: str) -> str:
    """The characters of ``text`` that count (CJK, digits, Latin letters)."""
    return "".join(_KEEP.findall(text))


def character_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = hanzi(reference), hanzi(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        diagonal, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (r != h))
    return row[-1] / max(1, len(ref))


def cjk_share(text: str) -> float:
    """The share of CJK characters among the counted characters of ``text``."""
    kept = hanzi(text)
    return sum("\u3400" <= ch <= "\u9fff" for ch in kept) / max(1, len(kept))
