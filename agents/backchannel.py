"""Tell a backchannel ("mhm", "okay", "yeah") from real words, per language."""

from __future__ import annotations

import re

from parley.agents.text import CJK_CHAR, CJK_CHARS_PER_WORD, has_cjk

DEFAULT_BACKCHANNELS: dict[str, list[str]] = {
    "en": [
        "mhm", "mm", "mmm", "hmm", "hm", "mm-hmm", "mmhmm", "uh-huh", "uh huh", "uhhuh", "yeah", "yep", "yes",
        "yup", "okay", "ok", "right", "sure", "i see", "got it", "alright", "all right", "ah", "oh", "aha", "cool",
        "nice", "wow", "uh", "um", "huh",
    ],
    "zh": ["嗯", "嗯嗯", "对", "对对", "对的", "好", "好的", "是", "是的", "哦", "啊", "明白"],
}
_SPLIT = re.compile(r"[^\w'-]+")


def words_of(text: str) -> list[str]:
    return [w for w in _SPLIT.split(text.lower()) if w.strip("-'")]


def is_backchannel(text: str, phrases: list[str]) -> bool:
    """True when ``text`` is empty or made only of backchannel phrases (e.g. "Okay, mhm.", "嗯嗯，好的")."""
    remaining = " ".join(words_of(text))
    if not remaining:
        return True
    # longest phrases first, so "i see" is taken before "i"; Chinese has no spaces between words, so
    # its phrases are taken wherever they stand ("嗯好的" is 嗯 + 好的)
    for phrase in sorted(phrases, key=len, reverse=True):
        pattern = re.escape(phrase) if has_cjk(phrase) else rf"(?<![\w']){re.escape(phrase)}(?![\w'])"
        remaining = re.sub(pattern, " ", remaining)
    return not remaining.strip() and not any(ch.isdigit() for ch in text)


def spoken_words(text: str) -> int:
    """How many words ``text`` says: its Latin words, and its Chinese characters two to a word."""
    chinese = len(CJK_CHAR.findall(text))
    return len(words_of(CJK_CHAR.sub(" ", text))) + chinese // CJK_CHARS_PER_WORD


def real_word_count(text: str, phrases: list[str]) -> int:
    """How many words of ``text`` are not backchannels."""
    return 0 if is_backchannel(text, phrases) else len([w for w in words_of(text) if w not in set(phrases)])
