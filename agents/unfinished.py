"""Does a transcript read as a sentence cut short? The word rules of ending turns on meaning (used
when the LLM cannot be asked: see ``agents/sentence_end.py``).

The end-of-turn model hears the voice; it can be fooled by a speaker who pauses on a falling tone
("What is the capital of … Australia?"). Whisper then still writes "What is the capital of?", and
the dangling "of" says what the audio did not: the caller is not done. A transcript that ends on a
word no sentence ends on (an article, a preposition, a conjunction, a possessive), or on a comma,
dash or ellipsis, is held for the caller to go on.
"""

from __future__ import annotations

import re

# Words an English sentence does not end on. Kept short and sure: a word that can end a sentence
# ("many", "know", "up") is not here, since holding a finished question costs the caller a pause (the
# 2 s hold). So neither are auxiliaries and modals ("Do you know what time it is?", "…than he was.",
# "Yes, I can."), "this"/"these"/"those" ("What is this?") or "so" ("I think so."): these are used only
# when the LLM cannot be asked (fewer than three words, or no answer within its 1 s on a busy server).
_DANGLING_EN = frozenset("""
a an the of to for from with without about between among into onto over under at by in on as than
and or but nor because although though if unless whether while that which who whose whom
my your his her its our their every each some any no
being very really quite just also
""".split())
# A question with "do" support needs a subject and a verb after it: "Why do leaves" (or Whisper's "Why
# do leave") is cut short, whatever the LLM makes of the misheard words. A pronoun alone is an ellipsis
# that can stand ("Why did you?", "How does it?").
_QUESTION_WORDS = frozenset("what why how when where which who whom whose".split())
_DO = frozenset("do does did don't doesn't didn't".split())
_PRONOUNS = frozenset("i you we they he she it that this so not".split())
_TRAILING_OPEN = ("...", "…", ",", "-", "—", ":", ";", "，", "、", "：", "；")
_WORDS = re.compile(r"[\w']+")


# ... and, where a spoken phrase (not a sentence) would stop: an auxiliary or copula waits for its verb
# or complement ("The moon is" | "about …"). A sentence can end on one ("I think it is."), a phrase rarely.
_AUXILIARIES_EN = frozenset("is are was were be been am will would can could should shall may might must has have had do does did".split())


def leaves_phrase_open(word: str) -> bool:
    """Whether speech that stops after the English ``word`` leaves its phrase hanging ("of", "the", "is")."""
    bare = word.strip(".,;:!?\"'()").lower()
    return bare in _DANGLING_EN or bare in _AUXILIARIES_EN


def ends_open(text: str) -> bool:
    """True when ``text`` ends on a comma, dash, colon or ellipsis (any language's marks)."""
    return text.strip().endswith(_TRAILING_OPEN)


def lacks_a_verb(text: str, language: str = "en") -> bool:
    """True for an English question cut after "do" and one word: "Why do leaves", "How does water"."""
    return language.lower().startswith("en") and _cut_after_do(_WORDS.findall(text.strip().lower()))


def _cut_after_do(words: list[str]) -> bool:
    return len(words) == 3 and words[0] in _QUESTION_WORDS and words[1] in _DO and words[2] not in _PRONOUNS


def sounds_unfinished(text: str, language: str = "en") -> bool:
    """True when ``text`` ends mid-sentence by its last word or punctuation (English words; any language's marks)."""
    stripped = text.strip()
    if not stripped:
        return False
    if ends_open(stripped):
        return True
    if not language.lower().startswith("en"):
        return False
    words = _WORDS.findall(stripped.lower())
    # One word alone is an answer ("No.", "Really?", "So?"), not a sentence cut short.
    return (len(words) > 1 and words[-1] in _DANGLING_EN) or _cut_after_do(words)
