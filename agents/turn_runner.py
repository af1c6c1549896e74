"""``TurnRunner``: what happens to a turn once the turn controller (``AgentSession``) has started it.

The question goes into the conversation and onto the caller's line as final; the reply is streamed
(the speculative one started at the pause when it was asked exactly this, else a new request) and
spoken by a ``Reply``; what the caller heard of it is remembered; and once the reply is whole, the
conversation as the next question will find it goes into the LLM's cache while the reply still plays.
The controller keeps the floor (its state machine, barge-in, folding); this class reports back only
when the reply's first sound went out (``on_audio_started``) and how the turn ended (``on_ended``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import AsyncIterator, Callable

from parley.agents import events as ev
from parley.agents.audio_output import AudioOutput
from parley.agents.backchannel import spoken_words
from parley.agents.text import CJK_CHAR, CJK_CHARS_PER_WORD, CJK_WORD_SLACK
from parley.agents.conversation import Conversation
from parley.agents.llm.base import ChatMessage
from parley.agents.llm_ahead import LlmAhead
from parley.agents.profile import AgentProfile
from parley.agents.reply import Reply
from parley.agents.reply_turn import Turn
from parley.agents.settings import AgentSettings
from parley.agents.speculation import VoicedAhead
from parley.agents.speech_models import SpeechModels
from parley.agents.stage_timer import SpeculationStats
from parley.agents.tts.base import is_slow
from parley.core.errors import ParleyError

# A first chunk this long (words; Chinese: two characters a word — the chunker's full first chunk) plays
# long enough for the next to be written and synthesized after the LLM yielded the cores to its voice.
# Shorter ones ("是的，") do not: in a probe on a slow host, the silence after them lasted 1.9–2.5 s.
YIELD_MIN_WORDS = 3
# Chinese: the chunker ends a full first chunk where a word ends, up to CJK_WORD_SLACK characters short of
# its six ("因为太阳光" | "穿过大气层"): four characters or more count as full.
YIELD_MIN_CHINESE_CHARS = YIELD_MIN_WORDS * CJK_CHARS_PER_WORD - CJK_WORD_SLACK


class TurnRunner:
    """Runs the turns of one call, one at a time (see the module docstring)."""

    def __init__(
        self, *, conversation: Conversation, profile: AgentProfile, speech: SpeechModels, ahead: LlmAhead,
        playout: AudioOutput, emit: Callable[[ev.AgentEvent], None], settings: AgentSettings, stats: SpeculationStats,
        log: logging.Logger | logging.LoggerAdapter, people: Callable[[], int], on_audio_started: Callable[[Turn], None],
        on_ended: Callable[[Turn, bool], None], caller_going_on: Callable[[Turn], bool], closed: Callable[[], bool],
    ) -> None:
        self._conversation = conversation
        self._profile = profile
        self._speech = speech
        self._ahead = ahead
        self._playout = playout
        self._emit = emit
        self._settings = settings
        self._stats = stats
        self._log = log
        self._people = people
        self._on_audio_started = on_audio_started
        self._on_ended = on_ended
        self._caller_going_on = caller_going_on  # the caller is continuing this turn's question now
        self._closed = closed

    async def run(self, turn: Turn) -> None:
        """Answer ``turn`` and speak the reply, then say how it ended (``on_ended``: whether the reply
        was spoken whole; a failure is reported as an agent failure). Cancel-safe: a cancelled turn
        drops its speculative reply and keeps what was heard."""
        voiced: VoicedAhead | None = None
        try:
            asker = turn.speaker
            self._log.info("turn %d: %s said %r", turn.id, asker.name if asker else "the caller", turn.user_text)
            if asker is not None:
                self._emit(ev.CallerTranscript(asker, turn.id, turn.user_text, True, turn.utterance_id))
            group = self._profile.group_mode(self._people())
            if turn.user_text:  # a turn asked for by a client (reply_now) answers the history as it stands
                turn.user_message = self._conversation.add(Conversation.user_message(turn.user_text, asker, group))
            language = self._profile.language_of(turn.user_text)  # an auto room answers in the question's language
            voice = self._profile.voice(language)
            stream, voiced = self._reply_stream(turn, group, language)
            synthesize = functools.partial(self._speech.synthesize, voice)
            reply = Reply(
                turn, self._playout, voiced.synthesizer(synthesize) if voiced is not None else synthesize, voice.sample_rate, self._emit,
                self._on_audio_started, streaming=self._settings.pipeline == "streaming",
                first_chunk_max_words=self._settings.first_chunk_max_words,
                on_voiced=lambda voiced: self._prime_after(voiced, group, language),
                first_words=self._yield_to_voice if is_slow(voice) else None,  # (Kokoro)
                voice_first_ahead=voiced is None,  # (voiced ahead already: its first chunk is synthesized)
            )
            await reply.run(stream)
            self._on_ended(turn, True)
        except asyncio.CancelledError:
            if turn.interrupted_at is None and not turn.dropped:
                self._log.info("turn %d cancelled", turn.id)
                self._playout.flush()
            raise
        except ParleyError as exc:
            self._log.warning("turn %d failed: %s", turn.id, exc)
            self._failed(turn, exc.code, str(exc))
        except Exception as exc:
            self._log.exception("turn %d failed", turn.id)
            self._failed(turn, "internal_error", f"turn {turn.id} failed: {type(exc).__name__}")
        finally:
            if turn.speculation is not None:  # ended before it streamed: the speculative reply goes too
                turn.speculation.cancel()
                turn.speculation = None
            if voiced is not None:  # (cut before its first words were asked for: not voiced for nothing)
                voiced.cancel()
            self._remember(turn)

    def _failed(self, turn: Turn, code: str, message: str) -> None:
        self._emit(ev.AgentFailure(code, message))
        self._playout.resume()
        self._on_ended(turn, False)

    def _reply_stream(self, turn: Turn, group: bool, language: str) -> tuple[AsyncIterator[str], VoicedAhead | None]:
        """The reply's LLM stream: the one started at the pause on these very words (with its first words,
        where they were voiced ahead), or a new one."""
        messages = self._conversation.prompt(group, language)
        spec, turn.speculation = turn.speculation, None
        if spec is not None and spec.matches(turn.user_text, messages):
            turn.speculative = True
            voiced = spec.voiced
            if voiced is not None:
                self._log.debug("turn %d: its first words voiced ahead: %s", turn.id, voiced.state)
                if not voiced.begun:
                    # They are not written yet: the reply voices them itself, a token sooner (``Reply``).
                    voiced.cancel()
                    voiced = None
            return self._whole(spec.adopt(), turn), voiced
        if spec is not None:
            spec.cancel()
        return self._whole(self._ahead.stream(messages), turn), None

    @staticmethod
    async def _whole(stream: AsyncIterator[str], turn: Turn) -> AsyncIterator[str]:
        """``stream``, marking ``turn.generated_all`` once it has ended."""
        async with contextlib.aclosing(stream) as deltas:  # type: ignore[type-var]
            async for delta in deltas:
                yield delta
        turn.generated_all = True

    def _prime_after(self, turn: Turn, group: bool, language: str) -> None:
        """Once the reply is whole and voiced (every chunk synthesized), put the conversation as the next
        question will find it (this reply included) into the LLM's cache while the reply plays: the CPU is
        idle then, and the next turn's prefill is only the caller's new words (``agent.speculate``). Not
        sooner: a slow voice (Kokoro, Mandarin) synthesizing the first words on the same two cores would
        wait for the prefill of the whole reply (a short reply is whole before a word of it is heard)."""
        if not turn.generated_all or not self._settings.speculate or not turn.reply.strip() or self._caller_going_on(turn):
            return  # (a caller going on: their words, not this reply, are what the next prompt holds)
        history = [
            *self._conversation.messages, ChatMessage(role="assistant", content=turn.reply.strip()), ChatMessage(role="user", content=""),
        ]
        if not self._closed() and self._ahead.prime(lambda: self._conversation.prompt(group, language, history), ""):
            self._stats.after_reply_primes += 1

    def _yield_to_voice(self, first: str) -> contextlib.AbstractContextManager[bool]:
        """While a slow voice synthesizes a reply's ``first`` chunk, the LLM yields it the cores
        (``LlmAhead.yielding``) — if that chunk is long enough to play while the next is written and
        synthesized: after a short one ("是的，") the caller would hear the time it saved as a silence."""
        chinese = len(CJK_CHAR.findall(first))
        if (chinese < YIELD_MIN_CHINESE_CHARS) if chinese else (spoken_words(first) < YIELD_MIN_WORDS):
            return contextlib.nullcontext(False)
        return self._ahead.yielding()

    def _remember(self, turn: Turn) -> None:
        if turn.dropped:
            return  # the controller took its question out of the history (or kept it, as someone else's context)
        reply = turn.remembered_reply()
        if reply and turn.segments:
            # The reply as generated (not as cleaned for speech) keeps the LLM server's prompt cache valid.
            turn.assistant_message = ChatMessage(role="assistant", content=reply)
            self._conversation.add(turn.assistant_message)
