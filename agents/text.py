"""Cut a streaming LLM reply into speakable chunks: the first as early as a clause, later ones per sentence."""

from __future__ import annotations

import bisect
import copy
import re
from typing import Iterator

from parley.agents.unfinished import leaves_phrase_open

_SENTENCE_END = ".!?…"
_CJK_SENTENCE_END = "。！？"
_CLAUSE_END = ",;:—"
_CJK_CLAUSE_END = "，；：、"
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "vs", "etc", "e.g", "i.e", "jr", "sr", "prof", "no"}
CJK_CLASS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # Chinese characters, as the body of a regex [class]
CJK_CHAR = re.compile(f"[{CJK_CLASS}]")  # one Chinese character
_UNIT = re.compile(f"[{CJK_CLASS}]|[^\\s{CJK_CLASS}]+")
CJK_CHARS_PER_WORD = 2
MAX_HANGING_WORDS = 2  # the first chunk waits at most this many words more for its phrase to close...
HANGING_WAIT_DELTAS = 2  # ... and at most this many more LLM deltas (a number is a token a digit: "384,400")
CJK_MAX_CHARS = 24
# A Chinese chunk cut by its length ends where a word ends (jieba's words, as Kokoro's phonemizer reads
# them): "保持良好的睡" | "眠习惯" split 睡眠 in two, each half voiced with its own tone contour and a pause
# between. The cut moves back to the last word end that keeps the chunk at least this many characters
# short of its length (e.g. 4 of 6)...
CJK_WORD_SLACK = 2
# ... or forward to the next word end, waiting at most this many characters for it (then it cuts by length).
CJK_WORD_WAIT = 3
_NEXT_WORD = "and"  # a stand-in for the word a delta may begin (any word that does not close a phrase)
_MARKDOWN = re.compile(r"[*_#`~>|]+|\[(.*?)\]\(.*?\)")


_WORD_CHAR = re.compile(r"\w")


def has_words(text: str) -> bool:
    """Whether ``text`` holds any word at all (Whisper writes punctuation alone, or nothing, for noise)."""
    return _WORD_CHAR.search(text) is not None


def chinese_word_ends(text: str) -> list[int] | None:
    """Where each word of ``text`` but the last (which may still be growing) ends, as the index of its last
    character, by jieba (installed with misaki[zh], Kokoro's phonemizer); None without jieba or while its
    dictionary is not loaded yet (~1 s: loading the Mandarin voice loads it, and the event loop that cuts
    chunks never waits for it)."""
    try:
        import jieba
    except ImportError:
        return None
    if not jieba.dt.initialized:
        return None
    ends, at = [], 0
    for word in jieba.lcut(text)[:-1]:
        at += len(word)
        ends.append(at - 1)
    return ends


def _word_ends_after(text: str, spans: list[int], min_units: int) -> list[int] | None:
    """``chinese_word_ends`` of ``text`` that leave at least ``min_units`` units before them (``spans``: where
    each unit of ``text`` ends); None where jieba cannot say."""
    ends = chinese_word_ends(text)
    return None if ends is None else [end for end in ends if bisect.bisect_right(spans, end) >= min_units]


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds any Chinese character."""
    return CJK_CHAR.search(text) is not None


def join_said(first: str, then: str) -> str:
    """Two stretches of one person's speech as one text: a space between them, but none where Chinese
    meets Chinese ("中国的首都是哪里？" + "北京有多大？")."""
    first, then = first.strip(), then.strip()
    if not first or not then:
        return first or then
    chinese_end = CJK_CHAR.match(first[-1]) is not None or first[-1] in _CJK_SENTENCE_END + _CJK_CLAUSE_END
    return f"{first}{then}" if chinese_end and CJK_CHAR.match(then[0]) is not None else f"{first} {then}"


def join_all_said(parts: list[str]) -> str:
    """``join_said`` over several stretches (a reply's spoken chunks)."""
    joined = ""
    for part in parts:
        joined = join_said(joined, part)
    return joined


def written_language(text: str) -> str:
    """The language a transcript is written in, as far as replies go: "zh" with any Chinese character, else "en"."""
    return "zh" if has_cjk(text) else "en"


def clean_for_speech(text: str) -> str:
    """Strip markdown and emoji-like symbols a voice should not read out."""
    gap = "" if has_cjk(text) else " "  # Chinese has no spaces to keep words apart
    text = _MARKDOWN.sub(lambda m: m.group(1) or gap, text)
    text = "".join(ch for ch in text if ch.isprintable() and not (0x1F000 <= ord(ch) <= 0x1FAFF))
    return re.sub(r"\s+", " ", text).strip()


def _is_boundary(text: str, i: int, marks: str, cjk_marks: str) -> bool:
    """True if ``text[i]`` ends a unit: CJK marks always, Latin marks only before whitespace."""
    ch = text[i]
    if ch in cjk_marks:
        return True
    if ch not in marks:
        return False
    if i + 1 >= len(text) or not text[i + 1].isspace():
        return False  # "3.5", "e.g." mid-stream, or we cannot tell yet
    if ch == ".":
        word = text[: i].rsplit(None, 1)[-1].lower() if text[:i].strip() else ""
        if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
            return False
    return True


def split_sentences(text: str) -> list[str]:
    """Split finished text into sentences (English and Chinese punctuation)."""
    chunker = SentenceChunker(first_clause_words=0)
    out = list(chunker.feed(text + " "))
    rest = chunker.flush()
    return out + ([rest] if rest else [])


class SentenceChunker:
    """Incremental chunker for streamed text.

    The first chunk is released at the first clause boundary once it has ``first_clause_words`` words,
    or after ``first_chunk_max_words`` words with no boundary at all (so speech starts after a few
    tokens: the TTS speaks a clause in tens of ms, the LLM needs about a second for a sentence on a
    CPU) — a word or two more where the last one leaves the phrase hanging ("The capital of" waits for
    "France"); later chunks are whole sentences, or clauses once the pending text passes ``max_chars``,
    or whatever whole words are there when the speaker would otherwise run out (``cut_words``).
    """

    def __init__(self, first_clause_words: int = 4, max_chars: int = 160, first_chunk_max_words: int = 0) -> None:
        self._pending = ""
        self._first_clause_words = first_clause_words
        self._first_chunk_max_words = first_chunk_max_words
        self._max_chars = max_chars
        self._emitted = 0
        self._deltas = 0  # deltas fed so far
        self._first_due_at: int | None = None  # the delta at which the first chunk could have been cut

    def feed(self, delta: str) -> Iterator[str]:
        """Add streamed text; yield every chunk that is now complete."""
        self._pending += delta
        self._deltas += 1
        while True:
            cut = self._find_cut()
            if cut is None:
                return
            chunk, self._pending = self._pending[: cut + 1].strip(), self._pending[cut + 1 :]
            if chunk:
                self._emitted += 1
                yield chunk

    def cut_words(self, min_words: int) -> str | None:
        """The pending text up to its last whole word, if it has ``min_words`` of them (Chinese: two
        characters a word, cut where a Chinese word ends if one does), as a chunk now: the reply would
        otherwise go silent until a sentence ends."""
        text = self._pending
        spans = [m.end() - 1 for m in _UNIT.finditer(text)]
        whole = len(spans) - 1  # the last unit may still be growing
        cjk = has_cjk(text)
        if whole < min_words * (CJK_CHARS_PER_WORD if cjk else 1):
            return None
        cut = spans[whole - 1]
        ends = _word_ends_after(text, spans, min_words * CJK_CHARS_PER_WORD) if cjk else None
        if ends:
            cut = min(cut, ends[-1])
        chunk, self._pending = text[: cut + 1].strip(), text[cut + 1 :]
        self._emitted += 1
        return chunk

    @property
    def emitted(self) -> int:
        """Chunks released so far."""
        return self._emitted

    def first_if_a_word_begins(self) -> str | None:
        """The first chunk as it would be released if the next delta began a new word (None once a chunk
        is out, or if it would not be released then): its voice can be synthesized one LLM token sooner,
        and used if the chunk released turns out to be exactly this text."""
        if self._emitted or not self._first_chunk_max_words or has_cjk(self._pending):
            return None
        trial = copy.copy(self)  # (every field is immutable: feeding the copy leaves this one as it is)
        return next(iter(trial.feed(" " + _NEXT_WORD)), None)

    def flush(self) -> str:
        """Return whatever text is left at the end of the stream."""
        rest, self._pending = self._pending.strip(), ""
        return rest

    def _find_cut(self) -> int | None:
        text = self._pending
        early = self._emitted == 0 and self._first_clause_words > 0
        if self._emitted == 0 and self._first_chunk_max_words:
            cut = self._first_word_cut(text)
            if cut is not None:
                boundary = self._boundary_cut(text[: cut + 1], early)
                return cut if boundary is None else boundary
        return self._boundary_cut(text, early)

    def _first_word_cut(self, text: str) -> int | None:
        """Where the first chunk ends without a clause boundary: after ``first_chunk_max_words`` words, or
        up to ``MAX_HANGING_WORDS`` more while the last one leaves the phrase hanging (English) — if they
        come within ``HANGING_WAIT_DELTAS`` more deltas; otherwise at the words there are."""
        words = self._first_chunk_max_words
        cut = self._word_cut(text, words)
        if cut is None or has_cjk(text):
            return cut
        if self._first_due_at is None:
            self._first_due_at = self._deltas
        while words < self._first_chunk_max_words + MAX_HANGING_WORDS and leaves_phrase_open(_UNIT.findall(text[: cut + 1])[-1]):
            longer = self._word_cut(text, words + 1)
            if longer is None:
                return cut if self._deltas - self._first_due_at >= HANGING_WAIT_DELTAS else None
            words, cut = words + 1, longer
        return cut

    @staticmethod
    def _word_cut(text: str, words: int) -> int | None:
        """Index of the last character of word number ``words``, once the word after it has begun.

        Chinese has no spaces: there, every two characters count as a word (4 words ≈ 8 characters), and
        the cut is moved to where a Chinese word ends (``CJK_WORD_SLACK``, ``CJK_WORD_WAIT``).
        """
        spans = [m.end() - 1 for m in _UNIT.finditer(text)]
        if not has_cjk(text):
            return spans[words - 1] if len(spans) > words else None
        units = words * CJK_CHARS_PER_WORD
        if len(spans) <= units:
            return None
        cut = spans[units - 1]
        ends = _word_ends_after(text, spans, units - CJK_WORD_SLACK)
        if ends is None:
            return cut
        before = [end for end in ends if end <= cut]
        if before:
            return before[-1]
        after = [end for end in ends if end - cut <= CJK_WORD_WAIT]
        if after:
            return after[0]
        return None if len(spans) <= units + CJK_WORD_WAIT else cut  # (no word ends near: by length after all)

    def _boundary_cut(self, text: str, early: bool) -> int | None:
        # A Chinese character carries a syllable (~0.25 s of speech): past CJK_MAX_CHARS a clause is cut
        # off, so no chunk asks the (slower) Mandarin voice for more than a few seconds at once.
        limit = min(self._max_chars, CJK_MAX_CHARS) if has_cjk(text) else self._max_chars
        for i in range(len(text)):
            if _is_boundary(text, i, _SENTENCE_END, _CJK_SENTENCE_END):
                return i
            if _is_boundary(text, i, _CLAUSE_END, _CJK_CLAUSE_END):
                words = len(text[: i + 1].split())
                cjk = text[i] in _CJK_CLAUSE_END
                if (early and (words >= self._first_clause_words or cjk)) or i >= limit:
                    return i
        return None
