"""Who the agent is in a room (name, prompt, voice, language, reply policy) and who it hears."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from parley.agents.settings import ReplyPolicy
from parley.agents.text import CJK_CLASS, written_language
from parley.agents.tts.base import TextToSpeech

# Words of a name or a transcript: Latin-script words, and each Chinese character on its own (Chinese
# writes no spaces, so "Parley今天天气怎么样" is "Parley" then 今, 天, …).
_WORDS = re.compile(rf"[{CJK_CLASS}]|[^\W_{CJK_CLASS}]+(?:'[^\W_{CJK_CLASS}]+)?")
# In an auto room the history mixes languages, and a small model tends to answer in the language of the
# earlier turns ("北京 is the capital of China."): the question in the prompt says which one to answer in.
ANSWER_IN = {"en": "(Answer in English.)", "zh": "（请用简体中文回答。）"}
NEAR_MISS_MIN_CHARS = 5  # names this long also match with one letter wrong ("Parlay" for "Parley")

GROUP_PROMPT = (
    " This is a group call: each user message starts with the speaker's name and a colon. Your name is "
    "{name}. Answer the person who spoke to you, by name when it helps, and never start your reply with "
    "a name and a colon."
)


@dataclass(frozen=True)
class Speaker:
    """A person the agent hears: their participant id and display name."""

    participant_id: str
    name: str


@dataclass(frozen=True)
class LanguageVoice:
    """How the agent answers in one language: its system prompt and its voice."""

    system_prompt: str
    tts: TextToSpeech


@dataclass
class AgentProfile:
    """The agent's settings in one room.

    ``language`` "auto": each reply follows the language its question was heard in, with the prompt and
    voice ``replies`` gives for it (``system_prompt`` and ``tts`` otherwise).
    """

    name: str
    system_prompt: str
    language: str
    reply_policy: ReplyPolicy
    tts: TextToSpeech
    replies: dict[str, LanguageVoice] = field(default_factory=dict)

    def language_of(self, text: str) -> str:
        """The language of an answer to ``text``: the room's, or in an auto room the one ``text`` is in."""
        return written_language(text) if self.language == "auto" else self.language

    def voice(self, language: str) -> TextToSpeech:
        reply = self.replies.get(language)
        return reply.tts if reply is not None else self.tts

    def group_mode(self, people: int) -> bool:
        """Whether the agent answers only when addressed (and labels turns with speaker names)."""
        if self.reply_policy == "auto":
            return people >= 2
        return self.reply_policy == "addressed"

    def reminder(self, language: str) -> str:
        """What the prompt adds to a question in an auto room to keep the reply in ``language`` ("" elsewhere)."""
        return ANSWER_IN.get(language, "") if self.language == "auto" else ""

    def prompt(self, group: bool, language: str | None = None) -> str:
        reply = self.replies.get(language) if language else None
        base = reply.system_prompt if reply is not None else self.system_prompt
        return base + (GROUP_PROMPT.format(name=self.name) if group else "")


def _sounds_like(said: str, name: str) -> bool:
    if said == name:
        return True
    if len(said) != len(name) or len(name) < NEAR_MISS_MIN_CHARS:
        return False
    return sum(a != b for a, b in zip(said, name)) <= 1  # one letter misheard, nothing added or dropped


def is_addressed(text: str, name: str) -> bool:
    """Whether ``text`` says ``name``, allowing for one misheard letter in a long enough name."""
    wanted = " ".join(w.lower() for w in _WORDS.findall(name))  # a Chinese name: its characters, one by one
    if not wanted:
        return False
    words = [w.lower().removesuffix("'s") for w in _WORDS.findall(text)]
    size = wanted.count(" ") + 1
    return any(_sounds_like(" ".join(words[i : i + size]), wanted) for i in range(len(words) - size + 1))
