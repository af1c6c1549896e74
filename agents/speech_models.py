"""``SpeechModels``: one call's use of the speech models — transcribing and synthesizing, each bounded.

Every call runs off the event loop (the models' executors) and is bounded by a timeout; any failure
comes back as a ``BackendError`` with a code the caller can show (``stt_failed``, ``tts_failed``). Here
also: how an utterance with words already settled in it is transcribed, and how a question said in
two parts is heard as one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, TypeVar

import numpy as np

from parley.agents.backchannel import spoken_words
from parley.agents.profile import AgentProfile
from parley.agents.runtime import AgentModels
from parley.agents.settings import AgentSettings
from parley.agents.text import has_words, join_said
from parley.agents.tts.base import TextToSpeech
from parley.core.audio import AGENT_RATE, join_speech
from parley.core.errors import BackendError

log = logging.getLogger(__name__)
T = TypeVar("T")

# A chunk's synthesis may take this long per word on top of agent.tts_timeout_s (3 × real time at 0.5 s a word).
SYNTHESIS_S_PER_WORD = 1.5
# Words settled before a pause are not transcribed again when at least this much audio follows them
# (a short tail is heard again with everything: a fragment alone is misheard).
SETTLED_MIN_TAIL_S = 1.5
HEARD_AGAIN_KEPT = 8  # what the larger ear heard of a call's unsure transcripts: the latest this many
WHOLE_KEEPS = 0.7  # a whole pass with fewer words than this share of its parts' dropped one of them


class SpeechModels:
    """Speech recognition and synthesis for one call, in its language, each call bounded by its timeout."""

    def __init__(
        self, models: AgentModels, agent: AgentSettings, profile: AgentProfile, group: Callable[[], bool],
        logger: logging.Logger | logging.LoggerAdapter = log,  # type: ignore[type-arg]
    ) -> None:
        self._models = models
        self._log = logger
        self._agent = agent
        self._profile = profile  # shared with the session: a client may change its language or voice
        self._group = group  # whether the call is a group call now (the agent's name then matters)
        self._heard_again: dict[str, str] = {}  # the call's latest unsure transcripts → what the larger ear heard

    async def transcribe(self, samples: np.ndarray, *, doubting: bool = False) -> str:
        """16 kHz mono ``samples`` as text, in the call's language. ``doubting`` (a transcript the turn
        waits for): words the main model is unsure of are heard again by the larger one at once, and the
        surer transcript is kept (``stt.hear_unsure_again``, where ``hears_again``)."""
        if doubting and self.hears_again and getattr(self._models, "hears_unsure_again", False):
            return await self._checked(samples)
        # In a group the agent's name decides whether it answers: bias recognition towards it
        # (Whisper tiny.en hears a leading "Parley" as "Partly" or "Harley" otherwise).
        hotwords = self._profile.name if self._group() else None
        return await bounded(
            "speech recognition", "stt_failed", self._agent.stt_timeout_s,
            self._models.transcribe(samples, self._profile.language, hotwords),
        )

    async def _checked(self, samples: np.ndarray) -> str:
        """``samples`` transcribed, and heard again where the main model was unsure (``AgentModels.transcribe_checked``);
        what the larger ear heard is remembered for ``hear_again``."""
        heard = await bounded(
            "speech recognition", "stt_failed", self._agent.stt_timeout_s,
            self._models.transcribe_checked(samples, self._profile.language),
        )
        text = heard.surer.strip()
        if heard.again is not None:
            self._log.info(
                "%r (%.2f) heard again as %r (%.2f): %r kept", heard.text, heard.logprob, heard.again,
                heard.again_logprob if heard.again_logprob is not None else float("nan"), text,
            )
            self._heard_again[text] = heard.again.strip()
            while len(self._heard_again) > HEARD_AGAIN_KEPT:
                del self._heard_again[next(iter(self._heard_again))]
        return text

    @property
    def hears_again(self) -> bool:
        """Whether ``hear_again`` has a larger model to ask: an English call, not a group, on a server that
        loaded one (``stt.hear_held_again``)."""
        can = getattr(self._models, "hears_again", False)
        return bool(can) and not self._group() and self._profile.language.startswith("en")

    async def hear_again(self, samples: np.ndarray, text: str | None = None) -> str | None:
        """``samples`` heard by a larger model than the call's own (``hears_again``); ``None`` where there
        is none, or if that pass fails. Where the main model's ``text`` of them was heard again already (an
        unsure transcript, see ``transcribe``), what the larger ear heard then, at once."""
        if not self.hears_again:
            return None
        if text is not None and text.strip() in self._heard_again:
            return self._heard_again[text.strip()]
        try:
            job = self._models.hear_again(samples)
            return await bounded("speech recognition (again)", "stt_failed", self._agent.stt_timeout_s, job)
        except BackendError as exc:
            self._log.warning("hearing held words again failed (%s): the hold goes on", exc)
            return None

    async def transcribe_after(self, samples: np.ndarray, settled: tuple[int, str] | None, *, doubting: bool = False) -> str:
        """``samples`` (an utterance from its start) as text: with words already settled in it (their
        sample count and text), only the audio after them is transcribed, and joined to them (``doubting``:
        see ``transcribe``)."""
        if settled is None or samples.size - settled[0] < SETTLED_MIN_TAIL_S * AGENT_RATE:
            return await self.transcribe(samples, doubting=doubting)
        tail = (await self.transcribe(samples[settled[0]:], doubting=doubting)).strip()
        return join_said(settled[1], tail) if has_words(tail) else settled[1]

    async def whole(self, first: np.ndarray, second: np.ndarray, fallback: str) -> tuple[np.ndarray, str]:
        """One question said in two parts, as one: its audio and one transcript of it (Whisper hears a
        fragment such as "of Germany?" far worse than the whole); if that pass fails, or drops a part
        (``lost_a_part``), ``fallback`` — the parts' own transcripts joined."""
        samples = join_speech(first, second, AGENT_RATE)
        return samples, self._whole_or_parts(await self._heard_as_one(samples), fallback)

    async def whole_first(
        self, first: np.ndarray, second: np.ndarray, held: str, parts: Callable[[], Awaitable[str]],
    ) -> tuple[np.ndarray, str]:
        """``whole`` for a question whose ``second`` part has not been heard alone yet (``first`` was
        heard as ``held``): the pass over both goes first, and ``parts`` (the second part's own transcript
        joined to ``held``) is asked for only where that pass fails or adds no words to ``held`` — Whisper
        stopped where the caller paused. One pass on the critical path instead of two in a row."""
        samples = join_speech(first, second, AGENT_RATE)
        whole = await self._heard_as_one(samples)
        if spoken_words(whole) > spoken_words(held):
            return samples, whole
        return samples, self._whole_or_parts(whole, await parts())

    async def _heard_as_one(self, samples: np.ndarray) -> str:
        """The transcript of a question's parts joined (``samples``); empty if the pass fails."""
        try:
            return (await self.transcribe(samples)).strip()
        except BackendError as exc:
            self._log.warning("transcribing the whole question failed (%s): using its parts' text", exc)
            return ""

    def _whole_or_parts(self, whole: str, parts: str) -> str:
        """``whole`` unless it is empty or dropped one of the ``parts`` (their transcripts joined)."""
        if whole and lost_a_part(whole, parts):
            self._log.info("the whole question heard as %r lost words of its parts %r: using the parts", whole, parts)
            return parts
        return whole or parts

    async def synthesize(self, tts: TextToSpeech, text: str) -> np.ndarray:
        """``text`` spoken by ``tts``; a longer chunk is given longer (``SYNTHESIS_S_PER_WORD``)."""
        job = asyncio.get_running_loop().run_in_executor(self._models.executor, tts.synthesize, text)
        timeout_s = self._agent.tts_timeout_s + SYNTHESIS_S_PER_WORD * spoken_words(text)
        return await bounded("speech synthesis", "tts_failed", timeout_s, job)


async def bounded(what: str, code: str, timeout_s: float, job: Awaitable[T]) -> T:
    """Await a model call (run off the loop), bounded by ``timeout_s``; any failure is a ``BackendError``."""
    try:
        return await asyncio.wait_for(job, timeout_s)
    except asyncio.TimeoutError as exc:
        raise BackendError(f"{what} took over {timeout_s:.0f} s", code=code) from exc
    except Exception as exc:
        raise BackendError(f"{what} failed: {type(exc).__name__}: {exc}", code=code) from exc


def lost_a_part(whole: str, parts: str) -> bool:
    """Whether Whisper's pass over a question's two parts at once dropped one: Whisper tiny.en, given "How
    long does it take" + 0.3 s + "to boil an egg?" as one clip over Opus, wrote "How long does it take?" and
    stopped (each part alone: "How long does it take?", "T'boil a nag."). Re-hearing a fragment with its
    context fixes a few words; it does not lose a third of them."""
    return spoken_words(whole) < WHOLE_KEEPS * spoken_words(parts)
