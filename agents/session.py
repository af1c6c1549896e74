"""``AgentSession``: one call's agent — listen, endpoint, transcribe, think, speak, yield the floor."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import time
import weakref
from typing import Awaitable, Callable, TypeVar

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from parley.agents.backchannel import is_backchannel, real_word_count
from parley.agents.endpointer import EndpointEvent, Endpointer, InterimAudio, SpeechDiscarded, SpeechStarted, Utterance
from parley.agents.llm.base import ChatMessage
from parley.agents.metrics import TurnTimer
from parley.agents.profile import AgentProfile, Speaker, is_addressed
from parley.agents.runtime import AgentModels
from parley.agents.text import SentenceChunker, clean_for_speech
from parley.agents.turn import Segment, Turn
from parley.agents.turn_state import Event, State, TurnStateMachine
from parley.server.audio import AGENT_RATE, WEBRTC_RATE, FrameToAgentPcm, resample
from parley.server.config import Settings
from parley.server.errors import BackendError, ParleyError
from parley.server.logs import CallLogger
from parley.server.playout import PlayoutTrack
from parley.signaling import messages as m

log = logging.getLogger(__name__)
_WORD = re.compile(r"\w")
EARLY_BARGE_IN_WORDS = 2  # an interim transcript with this many real words interrupts before the endpoint

Emit = Callable[[m.ServerMessage], None]
T = TypeVar("T")


class AgentSession:
    """Owns one call's agent: its input loop, its turns, its memory and its turn-taking state."""

    live: "weakref.WeakSet[AgentSession]" = weakref.WeakSet()  # for /metrics and leak checks

    def __init__(
        self,
        models: AgentModels,
        settings: Settings,
        playout: PlayoutTrack,
        emit: Emit,
        agent_id: str,
        profile: AgentProfile | None = None,
        people: Callable[[], int] = lambda: 1,
    ) -> None:
        self._models = models
        self._settings = settings
        self._playout = playout
        self._emit = emit
        self.agent_id = agent_id
        self.profile = profile or AgentProfile(
            settings.agent.name, settings.agent.system_prompt, settings.stt.language, settings.agent.reply_policy, models.tts,
        )
        self._people = people
        self.closed = False
        AgentSession.live.add(self)
        self._log = CallLogger(log, participant=agent_id)
        self._backchannels = settings.agent.backchannels.get(self.profile.language.split("-")[0], [])
        self.fsm = TurnStateMachine(self._on_state_change, self._log)
        self.history: list[ChatMessage] = []
        self._turn: Turn | None = None
        self.turns: collections.deque[Turn] = collections.deque(maxlen=16)  # recent turns, for inspection
        self._turn_counter = 0
        self._utterance_seq = 0
        self._decider: asyncio.Task[None] | None = None
        self._interim: asyncio.Task[None] | None = None

    @property
    def state(self) -> State:
        return self.fsm.state

    def _on_state_change(self, previous: State, state: State, event: Event) -> None:
        self._emit(m.AgentState(state=state.value, turn_id=self._turn.id if self._turn else None))

    def _user_transcript(self, speaker: Speaker, turn_id: int, text: str, final: bool) -> None:
        self._emit(m.Transcript(
            speaker="user", participant_id=speaker.participant_id, name=speaker.name, turn_id=turn_id, text=text, final=final,
        ))

    def _agent_transcript(self, turn_id: int, text: str, final: bool) -> None:
        self._emit(m.Transcript(
            speaker="agent", participant_id=self.agent_id, name=self.profile.name, turn_id=turn_id, text=text, final=final,
        ))

    def _new_endpointer(self) -> Endpointer:
        vad = self._settings.vad
        return Endpointer(
            self._models.vad.open_stream(), threshold=vad.threshold, min_speech_ms=vad.min_speech_ms,
            endpoint_silence_ms=vad.endpoint_silence_ms, preroll_ms=vad.preroll_ms, max_utterance_s=vad.max_utterance_s,
            discard_silence_ms=vad.discard_silence_ms, interim_ms=int(vad.interim_interval_s * 1000),
        )

    async def _bounded(self, what: str, code: str, timeout_s: float, job: Awaitable[T]) -> T:
        """Await a model call (run off the loop), bounded by ``timeout_s``; any failure is a ``BackendError``."""
        try:
            return await asyncio.wait_for(job, timeout_s)
        except asyncio.TimeoutError as exc:
            raise BackendError(f"{what} took over {timeout_s:.0f} s", code=code) from exc
        except Exception as exc:
            raise BackendError(f"{what} failed: {type(exc).__name__}: {exc}", code=code) from exc

    async def _transcribe(self, samples: np.ndarray) -> str:
        # In a group the agent's name decides whether it answers: bias recognition towards it
        # (Whisper tiny.en hears a leading "Parley" as "Partly" or "Harley" otherwise).
        hotwords = self.profile.name if self.profile.group_mode(self._people()) else None
        return await self._bounded(
            "speech recognition", "stt_failed", self._settings.agent.stt_timeout_s,
            self._models.transcribe(samples, self.profile.language, hotwords),
        )

    async def _synthesize(self, text: str) -> np.ndarray:
        job = asyncio.get_running_loop().run_in_executor(self._models.executor, self.profile.tts.synthesize, text)
        return await self._bounded("speech synthesis", "tts_failed", self._settings.agent.tts_timeout_s, job)

    # ---- input -------------------------------------------------------------------------------

    async def listen(self, track: MediaStreamTrack, speaker: Speaker) -> None:
        """Consume one person's audio until the track ends, driving the turn-taking state machine.

        Called once per person in the room: each has an endpointer of its own, the turns are shared.
        """
        if self._settings.agent.pipeline == "naive":
            await self._listen_naive(track, speaker)
            return
        endpointer = self._new_endpointer()
        converter = FrameToAgentPcm()
        loop = asyncio.get_running_loop()
        pending: list[np.ndarray] = []
        pending_size = 0
        try:
            while True:
                pcm = converter.convert(await track.recv())
                pending.append(pcm)
                pending_size += pcm.size
                if pending_size < endpointer.window_samples:
                    continue
                chunk = np.concatenate(pending)
                pending, pending_size = [], 0
                events = await loop.run_in_executor(self._models.vad_executor, endpointer.process, chunk, time.monotonic())
                for event in events:
                    self._on_endpoint_event(event, speaker)
        except MediaStreamError:
            self._log.info("%s's audio track ended", speaker.participant_id)
        except Exception as exc:  # a VAD failure ends listening for this call only
            self._log.exception("listening failed")
            self._emit(m.Error(code="backend_error", message=f"the agent stopped listening: {type(exc).__name__}"))

    def _on_endpoint_event(self, event: EndpointEvent, speaker: Speaker) -> None:
        if isinstance(event, SpeechStarted):
            if self._turn is not None and self._turn.active:
                self._playout.pause()  # stop talking at once; decide later whether to carry on
            self.fsm.fire(Event.SPEECH_START)
        elif isinstance(event, SpeechDiscarded):
            if self.state == State.PAUSED:
                self._resume("a blip, not speech")
            else:
                self.fsm.fire(Event.SPEECH_DISCARDED)
        elif isinstance(event, InterimAudio):
            if self._interim is None or self._interim.done():
                self._interim = asyncio.create_task(self._interim_transcript(event.samples, self._utterance_seq, speaker))
        elif isinstance(event, Utterance):
            self._utterance_seq += 1  # any interim pass still running is now stale
            timer = TurnTimer(0, event.speech_end_at, event.endpoint_at)
            self._decider = asyncio.create_task(self._decide(event, timer, self._decider, speaker))

    async def _listen_naive(self, track: MediaStreamTrack, speaker: Speaker) -> None:
        """The baseline: transcribe fixed chunks; a chunk with no words after some words ends the turn."""
        converter = FrameToAgentPcm()
        chunk_samples = int(self._settings.agent.naive_chunk_s * AGENT_RATE)
        pending = np.zeros(0, np.float32)
        heard: list[str] = []
        last_words_at = 0.0
        try:
            while True:
                pending = np.concatenate([pending, converter.convert(await track.recv())])
                if pending.size < chunk_samples:
                    continue
                chunk, pending = pending[:chunk_samples], pending[chunk_samples:]
                try:
                    text = await self._transcribe(chunk)
                except BackendError as exc:
                    self._emit(m.Error(code=exc.code, message=str(exc)))
                    continue
                now = time.monotonic()
                if _WORD.search(text):
                    heard.append(text.strip())
                    last_words_at = now
                elif heard:
                    timer = TurnTimer(0, last_words_at, now)
                    timer.stt_done_at = now
                    if self._turn is not None and self._turn.active and self._turn.task:
                        self._turn.task.cancel()
                    self._start_turn(timer, " ".join(heard), speaker)
                    heard = []
        except MediaStreamError:
            self._log.info("caller's audio track ended")

    # ---- deciding what an utterance means -----------------------------------------------------

    async def _interim_transcript(self, samples: np.ndarray, seq: int, speaker: Speaker) -> None:
        try:
            text = await self._transcribe(samples)
        except BackendError as exc:  # the final pass reports it, if it fails too
            self._log.debug("interim transcription failed: %s", exc)
            return
        if seq != self._utterance_seq or not _WORD.search(text):
            return  # the utterance ended meanwhile: its final transcript wins
        self._user_transcript(speaker, self._turn_counter + 1, text, final=False)
        if self.state == State.PAUSED and self._turn is not None and self._turn.audio_started:
            if real_word_count(text, self._backchannels) >= EARLY_BARGE_IN_WORDS:
                self._interrupt("real words in the interim transcript")

    async def _decide(
        self, utterance: Utterance, timer: TurnTimer, previous: asyncio.Task[None] | None, speaker: Speaker
    ) -> None:
        """Transcribe a finished utterance, then resume, interrupt, fold, note or start a turn."""
        if previous is not None and not previous.done():
            with contextlib.suppress(BaseException):
                await previous  # utterances are decided in order
        try:
            text = (await self._transcribe(utterance.samples)).strip()
        except BackendError as exc:
            self._log.warning("transcription failed: %s", exc)
            self._emit(m.Error(code=exc.code, message=str(exc)))
            if self.state == State.PAUSED:
                self._resume("transcription failed")
            else:
                self.fsm.fire(Event.NO_WORDS)
            return
        timer.stt_done_at = time.monotonic()
        words = bool(_WORD.search(text))
        if self.state == State.PAUSED and self._turn is not None:
            short = utterance.speech_ms < self._settings.vad.barge_in_min_speech_ms
            if not words or short or is_backchannel(text, self._backchannels):
                if words:
                    self._user_transcript(speaker, self._turn.id, text, final=True)
                self._resume(f"backchannel {text!r}" if words else "no words")
                return
        if not words:
            self._log.info("no words in %.2f s of speech", utterance.duration_s)
            self.fsm.fire(Event.NO_WORDS)
            return
        group = self.profile.group_mode(self._people())
        if group and not is_addressed(text, self.profile.name):
            self._note(speaker, text)
            return
        current = self._turn
        if current is not None and current.active:
            if current.audio_started:
                self._interrupt(f"{speaker.name or 'the caller'} said {text!r}")
            elif current.speaker == speaker:  # nothing of the reply was heard: fold both into one question
                text = f"{current.user_text} {text}"
                self._drop(current)
            else:  # someone else spoke before the reply began: answer the newer one, keep the older as context
                self._drop(current, keep_question=True)
        self._start_turn(timer, text, speaker)

    def _note(self, speaker: Speaker, text: str) -> None:
        """Words not meant for the agent (a group call where nobody said its name): context, no reply."""
        self._log.info("%s said %r (not to the agent)", speaker.name, text)
        self._user_transcript(speaker, self._turn_counter, text, final=True)
        self.history.append(ChatMessage(role="user", content=f"{speaker.name}: {text}"))
        turn = self._turn
        if self.state == State.PAUSED and turn is not None and turn.active:
            if turn.audio_started:
                self._interrupt(f"{speaker.name} talked over the agent")  # people are talking: yield the floor
            else:
                self._resume("words not meant for the agent")
        else:
            self.fsm.fire(Event.NO_WORDS)

    def _resume(self, reason: str) -> None:
        turn = self._turn
        self._playout.resume()
        if turn is None or not turn.active:
            self.fsm.fire(Event.SPEECH_DISCARDED)
            return
        self._log.info("turn %d resumes: %s", turn.id, reason)
        self.fsm.fire(Event.RESUME_SPEAKING if turn.audio_started else Event.RESUME_THINKING)
        self._emit(m.AgentResumed(turn_id=turn.id))

    def _interrupt(self, reason: str) -> None:
        """Barge-in: cut the reply where playout stopped, drop the rest, cancel its generation."""
        turn = self._turn
        if turn is None or not turn.active or turn.task is None:
            return
        turn.interrupted_at = self._playout.buffer.played
        self._playout.flush()
        self._playout.resume()
        turn.task.cancel()
        heard = turn.remembered_reply()
        self._log.info("turn %d interrupted (%s); the caller heard %r", turn.id, reason, heard)
        self.fsm.fire(Event.BARGE_IN)
        self._emit(m.AgentInterrupted(turn_id=turn.id, heard_text=heard))

    def _drop(self, turn: Turn, keep_question: bool = False) -> None:
        turn.dropped = True
        turn.keep_question = keep_question
        self._playout.flush()
        self._playout.resume()
        if turn.task is not None:
            turn.task.cancel()
        self._log.info("turn %d folded into the caller's next utterance", turn.id)
        self.fsm.fire(Event.CANCELLED)  # the caller has the floor again; the next turn starts from there
        if turn.segments:  # its text was already shown (synthesized ahead of playout): withdraw it, nothing was heard
            self._emit(m.AgentInterrupted(turn_id=turn.id, heard_text=""))

    # ---- turns -------------------------------------------------------------------------------

    def _start_turn(self, timer: TurnTimer, text: str, speaker: Speaker) -> None:
        self._turn_counter += 1
        timer.turn_id = self._turn_counter
        turn = Turn(self._turn_counter, timer, text, speaker=speaker)
        self._turn = turn
        self.turns.append(turn)
        self.fsm.fire(Event.UTTERANCE)
        turn.task = asyncio.create_task(self._run_turn(turn), name=f"turn-{turn.id}")

    def _messages(self, group: bool) -> list[ChatMessage]:
        keep = self._settings.agent.max_history_turns * 2
        history = self.history[-keep:] if keep else []
        merged: list[ChatMessage] = []
        for message in history:  # words said between replies become one user message
            if merged and message.role == "user" and merged[-1].role == "user":
                merged[-1] = ChatMessage(role="user", content=f"{merged[-1].content}\n{message.content}")
            else:
                merged.append(message)
        return [ChatMessage(role="system", content=self.profile.prompt(group)), *merged]

    async def _run_turn(self, turn: Turn) -> None:
        """Stream the reply to the caller's words and speak it; cancel-safe."""
        speaking: asyncio.Task[None] | None = None
        try:
            asker = turn.speaker
            self._log.info("turn %d: %s said %r", turn.id, asker.name if asker else "the caller", turn.user_text)
            if asker is not None:
                self._user_transcript(asker, turn.id, turn.user_text, final=True)
            group = self.profile.group_mode(self._people())
            content = f"{asker.name}: {turn.user_text}" if group and asker is not None else turn.user_text
            turn.user_message = ChatMessage(role="user", content=content)
            self.history.append(turn.user_message)
            chunks: asyncio.Queue[tuple[str, int, int] | None] = asyncio.Queue()
            speaking = asyncio.create_task(self._speak(turn, chunks))
            await self._generate(turn, chunks, speaking, group)
            await speaking
            self.fsm.fire(Event.REPLY_DONE)
        except asyncio.CancelledError:
            if turn.interrupted_at is None and not turn.dropped:
                self._log.info("turn %d cancelled", turn.id)
                self._playout.flush()
            raise
        except ParleyError as exc:
            self._log.warning("turn %d failed: %s", turn.id, exc)
            self._emit(m.Error(code=exc.code, message=str(exc)))
            self._playout.resume()
            self.fsm.fire(Event.FAILED)
        except Exception as exc:
            self._log.exception("turn %d failed", turn.id)
            self._emit(m.Error(code="internal_error", message=f"turn {turn.id} failed: {type(exc).__name__}"))
            self._playout.resume()
            self.fsm.fire(Event.FAILED)
        finally:
            if speaking is not None and not speaking.done():
                speaking.cancel()
                with contextlib.suppress(BaseException):
                    await speaking
            self._remember(turn)

    def _remember(self, turn: Turn) -> None:
        if turn.dropped:
            if turn.user_message in self.history and not turn.keep_question:
                self.history.remove(turn.user_message)
            return
        reply = turn.remembered_reply()
        if reply and turn.segments:
            # The reply as generated (not as cleaned for speech) keeps the LLM server's prompt cache valid.
            self.history.append(ChatMessage(role="assistant", content=reply))

    async def _generate(
        self, turn: Turn, chunks: asyncio.Queue[tuple[str, int, int] | None], speaking: asyncio.Task[None], group: bool
    ) -> None:
        """Stream the LLM's reply into ``chunks`` with each chunk's place in the reply's text."""
        streaming = self._settings.agent.pipeline == "streaming"
        chunker = SentenceChunker(first_chunk_max_words=self._settings.agent.first_chunk_max_words)
        cursor = 0

        def put(chunk: str) -> None:
            nonlocal cursor
            reply = turn.reply
            start = reply.find(chunk, cursor)
            start = cursor if start < 0 else start
            cursor = start + len(chunk)
            chunks.put_nowait((chunk, start, cursor))

        async for delta in self._models.llm.stream(self._messages(group)):
            if turn.timer.llm_first_token_at is None:
                turn.timer.llm_first_token_at = time.monotonic()
            turn.generated.append(delta)
            if not streaming:
                continue  # the naive baseline speaks only once the whole reply is known
            for chunk in chunker.feed(delta):
                put(chunk)
            if speaking.done():
                return  # the speaker failed: awaiting it raises its exception
        rest = chunker.flush() if streaming else turn.reply.strip()
        if rest:
            put(rest)
        chunks.put_nowait(None)

    async def _speak(self, turn: Turn, chunks: asyncio.Queue[tuple[str, int, int] | None]) -> None:
        """Synthesize chunks in order and queue them for playout; return once the last one has been played."""
        tts = self.profile.tts
        timer = turn.timer
        end = self._playout.buffer.pushed
        reporter: asyncio.Task[None] | None = None
        spoken: list[str] = []
        try:
            while (item := await chunks.get()) is not None:
                chunk, raw_start, raw_end = item
                text = clean_for_speech(chunk)
                if not _WORD.search(text):
                    continue
                if timer.first_chunk_at is None:
                    timer.first_chunk_at = time.monotonic()
                audio = await self._synthesize(text)
                pcm = resample(audio, tts.sample_rate, WEBRTC_RATE)
                start = self._playout.buffer.pushed
                end = self._playout.push(pcm)
                turn.segments.append(Segment(start, end, raw_start, raw_end))
                spoken.append(text)
                if reporter is None:
                    timer.tts_first_audio_at = time.monotonic()
                    reporter = asyncio.create_task(self._report_first_audio(turn, start + 1))
                if turn.interrupted_at is None and not turn.dropped:  # cut meanwhile: heard_text has the last word
                    self._agent_transcript(turn.id, " ".join(spoken), final=False)
            await self._playout.buffer.wait_played(end)
            if reporter is not None:
                await reporter
            if spoken:
                self._agent_transcript(turn.id, " ".join(spoken), final=True)
        finally:
            if reporter is not None and not reporter.done():
                reporter.cancel()

    async def _report_first_audio(self, turn: Turn, position: int) -> None:
        turn.timer.first_audio_sent_at = await self._playout.buffer.wait_played(position)
        if turn.interrupted_at is not None or turn.dropped:
            return  # released by a flush, not by playout
        turn.audio_started = True
        self.fsm.fire(Event.AUDIO_STARTED)
        metrics = turn.timer.as_metrics()
        self._log.info("turn %d metrics: %s", turn.id, " ".join(f"{k}={v}" for k, v in metrics.items()))
        self._emit(m.TurnMetrics(turn_id=turn.id, **metrics))

    async def close(self) -> None:
        """Cancel everything in flight and stop speaking."""
        tasks = [t for t in (self._decider, self._interim, self._turn.task if self._turn else None) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._playout.flush()
        self.fsm.reset()
        self.closed = True
