"""``AgentSession``: one call's turn controller — what each utterance means, and who has the floor.

It sits between a ``Listener`` per person (audio → endpoint events, ``agents/listener.py``; the naive
baseline's ``NaiveListener``, ``agents/naive.py``) and the ``TurnRunner`` that answers each turn it
starts (question into the conversation, reply streamed and spoken by a ``Reply``, what was heard kept:
``agents/turn_runner.py``). Here: the turn-taking state machine, what each finished utterance is (a
new question, more of one whose reply nobody heard, a backchannel, a barge-in, words not meant for the
agent), resuming, and folding a continued question into one. The work done on the caller's words
before their turn is decided — primes, the transcription started at each pause, whether the words stop
mid-sentence, the speculative reply — is ``Anticipation``'s (``agents/anticipation.py``; the LLM side of
it, ``LlmAhead``'s), the speculative reply adopted here when the turn ends on its words. What it decides
on is kept apart: who is speaking and where each began against playout (``SpeechOnsets``,
``agents/onsets.py``), the order finished utterances are decided in and who spoke again meanwhile
(``Decisions``, ``agents/decisions.py``), the question each caller is still asking (``OpenQuestions``,
``agents/open_question.py``), what a finished utterance says — its words, joined with any held before it,
and the question once they read finished or the hold on them ends (``QuestionReader``,
``agents/question_reader.py``), what is transcribed while they speak (``Hearing``), the conversation
(``Conversation``) and the speech models (``SpeechModels``). It reports through typed agent events
(``agents/events.py``); the signaling side turns them into wire messages."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import weakref
from typing import Callable

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from parley.agents import events as ev
from parley.agents.anticipation import Anticipation
from parley.agents.conversation import Conversation
from parley.agents.decisions import Decisions
from parley.agents.speech_models import SpeechModels
from parley.agents.backchannel import is_backchannel, real_word_count, spoken_words
from parley.agents.endpointer import (
    EndpointEvent, InterimAudio, SpeechConfirmed, SpeechDiscarded, SpeechPaused, SpeechResumed, SpeechStarted, Utterance,
)
from parley.agents.echo_cancel import EchoCanceller
from parley.agents.hearing import Hearing
from parley.agents.listener import Listener, new_endpointer
from parley.agents.naive import NaiveListener
from parley.agents.open_question import OpenQuestions
from parley.agents.onsets import SpeechOnsets, sounded_before
from parley.agents.llm_ahead import LlmAhead
from parley.agents.llm.base import ChatMessage
from parley.agents.stage_timer import TurnTimer
from parley.agents.text import has_words, join_said
from parley.agents.profile import AgentProfile, Speaker, is_addressed
from parley.agents.runtime import AgentModels
from parley.agents.question_reader import Heard, QuestionReader
from parley.agents.caller_lines import CallerLines
from parley.agents.speculation import SpeculativeReply, WholePass
from parley.agents.reply_turn import Turn, heard_chars, heard_prefix
from parley.agents.turn_runner import TurnRunner
from parley.agents.dialogue_state import Event, State, TurnStateMachine
from parley.core.audio import AGENT_RATE, WEBRTC_RATE, join_speech
from parley.agents.settings import AUTO_LANGUAGES, PipelineSettings, VadSettings
from parley.core.errors import BackendError
from parley.core.logs import CallLogger
from parley.agents.audio_output import AudioOutput

log = logging.getLogger(__name__)
EARLY_BARGE_IN_WORDS = 2  # an interim transcript with this many real words interrupts before the endpoint
WENT_ON_WITHIN_S = 0.6  # a short word over the agent and more speech this soon after it: one utterance
HEARD_ALONE_WORDS = 4  # a continuation this long is transcribed on its own, not again with the question it continues

Emit = Callable[[ev.AgentEvent], None]


class AgentSession:
    """Owns one call's agent: its turns, its memory and its turn-taking state (listening and speaking are delegated)."""

    live: "weakref.WeakSet[AgentSession]" = weakref.WeakSet()  # for /metrics and leak checks

    def __init__(
        self,
        models: AgentModels,
        settings: PipelineSettings,
        playout: AudioOutput,
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
        self._backchannels = _backchannels_for(self.profile.language, settings.agent.backchannels)
        self.fsm = TurnStateMachine(self._on_state_change, self._log)
        self.conversation = Conversation(self.profile, settings.agent.max_history_turns)
        self.speech = SpeechModels(models, settings.agent, self.profile, lambda: self.profile.group_mode(self._people()), self._log)
        self._turn: Turn | None = None
        self.turns: collections.deque[Turn] = collections.deque(maxlen=16)  # recent turns, for inspection
        self._turn_counter = 0
        self._utterance_seq = 0
        self._lines = CallerLines()
        # the question each caller is still asking: words held as unfinished, a turn nobody has heard the reply of
        self.asking = OpenQuestions(lambda: self._turn, self.conversation, self.profile, people, self._lines)
        self._onsets = SpeechOnsets(lambda: playout.buffer.played)  # who speaks now, and where each began
        self._decisions = Decisions()  # each finished utterance's decision, in order; who spoke again meanwhile
        # The LLM's work before a turn commits: primes, whether a pause's words stop mid-sentence, and the
        # reply started on them while the end of the turn is still being decided.
        vad = settings.vad
        self._ahead = LlmAhead(
            models.llm, models.speculation, threshold=vad.text_turn_threshold, min_words=vad.text_turn_min_words,
            thresholds=vad.text_turn_thresholds, log=self._log, name=agent_id, writing=self._writing_a_reply,
        )
        # Overlap: what is transcribed while they speak (interim passes, the pass at each pause, sentences kept)
        self.hearing = Hearing(self.speech, models.early_stt, self._log, quiet=self._ahead.yielding_to_transcription)
        # When to prime, transcribe at a pause, judge the words and speculate a reply, on what words
        self._anticipation = Anticipation(
            self, settings=lambda: self._settings, speech=self.speech, hearing=self.hearing, asking=self.asking, ahead=self._ahead,
            profile=self.profile, people=people, backchannels=self._backchannels, stats=models.speculation, log=self._log,
        )
        # What each finished utterance says: its words, joined with any held before it, and the question in them
        self._reader = QuestionReader(
            speech=self.speech, asking=self.asking, anticipation=self._anticipation, ahead=self._ahead, decisions=self._decisions,
            settings=lambda: self._settings, closed=lambda: self.closed, log=self._log,
        )
        self._runner = TurnRunner(
            conversation=self.conversation, profile=self.profile, speech=self.speech, ahead=self._ahead, playout=playout, emit=emit,
            settings=settings.agent, stats=models.speculation, log=self._log, people=people, on_audio_started=self._audio_started,
            on_ended=self._turn_ended, caller_going_on=self._caller_going_on, closed=lambda: self.closed,
        )

    @property
    def history(self) -> list[ChatMessage]:
        """The conversation so far, oldest first (see ``Conversation``)."""
        return self.conversation.messages

    @property
    def state(self) -> State:
        return self.fsm.state

    @property
    def current_turn(self) -> Turn | None:
        """The latest turn (replying, or done)."""
        return self._turn

    @property
    def deciding(self) -> bool:
        """Whether an utterance is being decided."""
        return self._decisions.deciding

    def _on_state_change(self, previous: State, state: State, event: Event) -> None:
        self._emit(ev.StateChanged(state, self._turn.id if self._turn else None))

    def _user_transcript(self, speaker: Speaker, turn_id: int, text: str, final: bool, utterance_id: int) -> None:
        self._emit(ev.CallerTranscript(speaker, turn_id, text, final, utterance_id))

    # ---- input -------------------------------------------------------------------------------

    async def listen(self, track: MediaStreamTrack, speaker: Speaker, canceller: EchoCanceller | None = None) -> None:
        """Consume one person's audio until the track ends, driving the turn-taking state machine.

        Called once per person in the room: each has an endpointer of its own, the turns are shared.
        ``canceller``: the person's echo canceller (the agent's voice removed before anything listens).
        """
        if self._settings.agent.pipeline == "naive":
            await self._listen_naive(track, speaker)
            return
        endpointer = new_endpointer(self._models, self._settings.vad, words_judged=self._settings.agent.speculate)
        listener = Listener(
            endpointer, self._models.vad_executor, lambda event: self._on_endpoint_event(event, speaker), canceller,
        )
        try:
            with self._anticipation.listening(speaker.participant_id, endpointer):
                await listener.run(track)
        except MediaStreamError:
            self._log.info("%s's audio track ended", speaker.participant_id)
        except Exception as exc:  # a VAD failure ends listening for this call only
            self._log.exception("listening failed")
            self._emit(ev.AgentFailure("backend_error", f"the agent stopped listening: {type(exc).__name__}"))

    def _on_endpoint_event(self, event: EndpointEvent, speaker: Speaker) -> None:
        if self.closed:
            return
        if isinstance(event, SpeechStarted):
            onset = self._onsets.began(speaker.participant_id)
            if not event.confirm_first:  # (an onset that may be the agent's own echo is not judged so)
                self._talked_over(speaker, onset)
            self._decisions.spoke(speaker.participant_id)
            if event.confirm_first and self._turn is not None and self._turn.active:
                # Their echo canceller is still learning: this may be the agent's own voice. Stop only if it lasts.
                self._onsets.hold_unconfirmed(speaker.participant_id)
                return
            self._speech_started(speaker)
        elif isinstance(event, SpeechConfirmed):
            onset = self._onsets.confirmed(speaker.participant_id)
            if onset is not None:  # real speech after all, begun at the onset: whether they had heard the reply is judged there
                self._talked_over(speaker, onset)
                self._speech_started(speaker)
        elif isinstance(event, SpeechDiscarded):
            if self._onsets.discarded(speaker.participant_id):  # a blip of echo, never acted on
                self._log.info("a blip over the agent while %s's echo canceller was learning: not stopped for it", speaker.name)
                return
            if self.state == State.PAUSED:
                self._resume("a blip, not speech")
            else:
                self.fsm.fire(Event.SPEECH_DISCARDED)
        elif isinstance(event, SpeechPaused):
            if self._settings.agent.speculate:
                self._anticipation.at_pause(event, speaker)
        elif isinstance(event, SpeechResumed):
            self._ahead.cancel(speaker.participant_id, event.pause, "the caller went on")
            self._ahead.sentence_ends.drop(speaker.participant_id)
            seq = self._utterance_seq
            self.hearing.resumed(speaker.participant_id, event.pause, event.silence_ms, lambda: not self.closed and seq == self._utterance_seq)
        elif isinstance(event, InterimAudio):
            seq = self._utterance_seq
            self.hearing.interim(speaker.participant_id, event.samples, lambda text: self._interim_heard(text, seq, speaker))
        elif isinstance(event, Utterance):
            self._onsets.ended(speaker.participant_id)
            self._utterance_seq += 1  # any interim pass still running is now stale
            transcript, whole, settled = self.hearing.at_utterance(speaker.participant_id, event.pause)
            timer = TurnTimer(0, event.speech_end_at, event.endpoint_at, end_of_turn_ms=event.turn_model_ms or None)
            self._ahead.cancel_unless(speaker.participant_id, event.pause, "the turn ended elsewhere")
            line = self._lines.close(speaker.participant_id)  # whatever they say next is a new line
            self._decisions.start(
                speaker.participant_id, lambda: self._decide(event, timer, speaker, transcript, line, settled, whole),
            )

    def _talked_over(self, speaker: Speaker, played_at_onset: int) -> None:
        """At the onset of ``speaker``'s speech: if the reply to them had barely begun to sound, they began
        together (see ``Turn.talked_over``)."""
        sounded_s = sounded_before(self._turn, speaker, played_at_onset)
        if sounded_s is not None and self._turn is not None:
            self._turn.talked_over = True
            self._log.info("turn %d: %s began speaking %.2f s into its first sound: not heard yet", self._turn.id, speaker.name or "the caller", sounded_s)

    def _writing_a_reply(self) -> bool:
        """Whether the LLM is writing this call's reply now (a caller speaking on over it, or barging in)."""
        return self._turn is not None and self._turn.active and not self._turn.generated_all

    def _speech_started(self, speaker: Speaker) -> None:
        if self._turn is not None and self._turn.active:
            self._playout.pause()  # stop talking at once; decide later whether to carry on
            if not self._turn.audio_started:
                # The LLM may be stopped while the voice synthesizes this reply's first words: they wait now, and
                # the caller's words come first (the judgement of what they say waits in the call's slot of the
                # LLM behind this reply, and a stopped child serves nobody).
                self._ahead.stop_yielding()
        self.fsm.fire(Event.SPEECH_START)
        self._anticipation.prime(self.asking.so_far(speaker, ""), speaker)

    async def _listen_naive(self, track: MediaStreamTrack, speaker: Speaker) -> None:
        """The baseline: fixed chunks transcribed one after another (``NaiveListener``); each question
        replaces any reply still going."""

        def asked(timer: TurnTimer, text: str) -> None:
            if self._turn is not None and self._turn.active and self._turn.task:
                self._turn.task.cancel()
            self._start_turn(timer, text, speaker)

        listener = NaiveListener(
            self.speech.transcribe, self._settings.agent.naive_chunk_s, asked, lambda exc: self._emit(ev.AgentFailure(exc.code, str(exc))),
        )
        try:
            await listener.run(track)
        except MediaStreamError:
            self._log.info("caller's audio track ended")

    # ---- deciding what an utterance means -----------------------------------------------------

    def _interim_heard(self, text: str, seq: int, speaker: Speaker) -> None:
        """An interim transcript of ``speaker``'s utterance number ``seq``: shown on their line, primed, and
        over a paused reply they had heard, a barge-in once it holds real words."""
        if self.closed or seq != self._utterance_seq or not has_words(text):
            return  # the utterance ended meanwhile: its final transcript wins
        line, shown = self.asking.interim_line(speaker, text)
        self._user_transcript(speaker, self._turn_counter + 1, shown, final=False, utterance_id=line)
        self._anticipation.prime(shown, speaker)  # the whole question so far: what its reply's prompt will start with
        if self.state == State.PAUSED and self._turn is not None and not self._turn.unheard:
            if real_word_count(text, self._backchannels) >= EARLY_BARGE_IN_WORDS:
                self._interrupt("real words in the interim transcript")

    async def _decide(
        self, utterance: Utterance, timer: TurnTimer, speaker: Speaker, transcript: asyncio.Task[str] | None = None,
        line: int = 0, settled: tuple[int, str] | None = None, whole: WholePass | None = None,
    ) -> None:
        """Read a finished utterance (``QuestionReader``: its words, and the question in them), then resume,
        interrupt, fold, note or start a turn (once the utterances that ended before it are decided:
        ``Decisions``)."""
        if self.closed:
            return
        try:
            await self._decide_on(utterance, timer, speaker, transcript, line, settled, whole)
        finally:
            if whole is not None:
                whole.task.cancel()  # (done by now where it was used)
            if utterance.pause is not None:  # no turn took the reply started in this pause: drop it
                self._ahead.cancel(speaker.participant_id, utterance.pause, "the utterance started no turn")

    async def _decide_on(
        self, utterance: Utterance, timer: TurnTimer, speaker: Speaker, transcript: asyncio.Task[str] | None, line: int,
        settled: tuple[int, str] | None = None, whole: WholePass | None = None,
    ) -> None:
        try:
            heard = await self._reader.heard(utterance, speaker, transcript, line, settled, whole)
        except BackendError as exc:
            self._transcription_failed(exc)
            return
        if heard is None or self.closed:
            return
        timer.stt_done_at = time.monotonic()
        if await self._settled_over_paused_reply(utterance, speaker, heard):
            return
        if not has_words(heard.text):
            self._log.info("no words in %.2f s of speech", utterance.duration_s)
            self.fsm.fire(Event.NO_WORDS)
            return
        group = self.profile.group_mode(self._people())
        if group and not is_addressed(heard.text, self.profile.name):
            self._note(speaker, heard.text, heard.line)
            return
        question = await self._reader.question(utterance, timer, speaker, heard)
        if question is not None:
            await self._take_turn(utterance, timer, speaker, question, heard.line, heard.samples)

    def _transcription_failed(self, exc: BackendError) -> None:
        """An utterance could not be transcribed: reported, and the floor moves on."""
        self._log.warning("transcription failed: %s", exc)
        self._emit(ev.AgentFailure(exc.code, str(exc)))
        if self.state == State.PAUSED:
            self._resume("transcription failed")
        else:
            self.fsm.fire(Event.NO_WORDS)

    async def _settled_over_paused_reply(self, utterance: Utterance, speaker: Speaker, heard: Heard) -> bool:
        """Over a reply paused for this utterance: whether it is settled here — more speech came at once (held,
        heard with what follows), or it was no words, too short or a backchannel (the reply resumes)."""
        if self.state != State.PAUSED or self._turn is None:
            return False
        if await self._reader.went_on(utterance, speaker, WENT_ON_WITHIN_S):
            # "Stop, what is ...": a first part (short, often misheard over the agent's voice: "up") and
            # more at once: stay paused and hear both as one utterance, on one line, when the rest is decided
            self.asking.hold(speaker, heard.text, heard.line, heard.samples)
            self._log.info("%r over the agent and %s went on: heard with what follows", heard.text, speaker.name)
            return True
        if self.closed:
            return True
        if self.state != State.PAUSED or self._turn is None:
            return False
        text = heard.text
        words = has_words(text)
        short = utterance.speech_ms < self._settings.vad.barge_in_min_speech_ms and not heard.carried
        if not words or short or is_backchannel(text, self._backchannels):
            if words:
                self._user_transcript(speaker, self._turn.id, text, final=True, utterance_id=heard.line)
            if self.state == State.PAUSED:  # (a blip may have resumed it meanwhile)
                self._resume(f"backchannel {text!r}" if words else "no words")
            return True
        return False

    async def _take_turn(
        self, utterance: Utterance, timer: TurnTimer, speaker: Speaker, text: str, line: int, samples: np.ndarray,
    ) -> None:
        """Answer ``text``: over a reply still going, interrupt it (heard), fold into it (nobody heard it), or
        drop it for the newer question (someone else's, not begun); then start the turn."""
        current = self._turn
        if current is not None and self._lines.give_back(current.utterance_id):
            if not (current.active and current.unheard and current.speaker == speaker) and current.speaker:
                # Its reply was heard after all: the continuation is a new question; the old line gets its words back.
                self._user_transcript(current.speaker, current.id, current.user_text, final=True, utterance_id=current.utterance_id)
        if current is not None and current.active:
            if not (current.unheard and current.speaker == speaker) and current.audio_started:
                self._interrupt(f"{speaker.name or 'the caller'} said {text!r}")
            elif current.speaker == speaker:  # nothing of the reply was heard: fold both into one question
                line = current.utterance_id  # and show it on the first part's line
                self._drop(current)
                samples, text = await self._folded(current, samples, text)
                if self.closed:
                    return
            else:  # someone else spoke before the reply began: answer the newer one, keep the older as context
                self._drop(current, keep_question=True)
        self._start_turn(timer, text, speaker, line, samples, self._ahead.take(speaker.participant_id, utterance.pause))

    async def _folded(self, asked: Turn, samples: np.ndarray, text: str) -> tuple[np.ndarray, str]:
        """The question ``asked`` answered (nothing of the reply heard) and the caller's continuation of it,
        as one. A continuation of a few words ("of Germany?") is heard again with what came before: Whisper
        hears such a fragment far worse alone. A longer one keeps both transcripts: the words already heard
        stay as they were (and as they are in the LLM's cache) and only the new audio was transcribed — a
        caller speaking sentence after sentence with pauses between them is answered on their last words
        instead of after one more pass over everything they said (2–4 s into a 17 s monologue)."""
        joined = join_said(asked.user_text, text)
        if asked.samples is None:
            return samples, joined
        if spoken_words(text) >= HEARD_ALONE_WORDS:
            return join_speech(asked.samples, samples, AGENT_RATE), joined
        return await self.speech.whole(asked.samples, samples, joined)

    def _note(self, speaker: Speaker, text: str, line: int) -> None:
        """Words not meant for the agent (a group call where nobody said its name): context, no reply."""
        self._log.info("%s said %r (not to the agent)", speaker.name, text)
        self._user_transcript(speaker, self._turn_counter, text, final=True, utterance_id=line)
        self.conversation.add(ChatMessage(role="user", content=f"{speaker.name}: {text}"))
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
        turn.talked_over = False  # heard from here on: what they say next is about it
        self.fsm.fire(Event.RESUME_SPEAKING if turn.audio_started else Event.RESUME_THINKING)
        self._emit(ev.ReplyResumed(turn.id))

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
        self._emit(ev.ReplyInterrupted(turn.id, heard))

    def _drop(self, turn: Turn, keep_question: bool = False) -> None:
        turn.dropped = True
        if not keep_question and turn.user_message is not None:
            # Now, not when its task ends: the question it folds into is asked sooner. (A task cancelled before
            # its first step never puts its question in the history.)
            self.forget(turn.user_message)
        self._playout.flush()
        self._playout.resume()
        if turn.task is not None:
            turn.task.cancel()
        self._log.info("turn %d folded into the caller's next utterance", turn.id)
        self.fsm.fire(Event.CANCELLED)  # the caller has the floor again; the next turn starts from there
        if turn.segments:  # its text was already shown (synthesized ahead of playout): withdraw it, nothing was heard
            self._emit(ev.ReplyInterrupted(turn.id, ""))

    # ---- turns -------------------------------------------------------------------------------

    def _start_turn(
        self, timer: TurnTimer, text: str, speaker: Speaker | None, line: int = 0, samples: np.ndarray | None = None,
        speculation: SpeculativeReply | None = None,
    ) -> None:
        if self.closed:
            if speculation is not None:
                speculation.cancel()
            return  # the room ended: a turn now would wait forever on a stopped playout
        self._turn_counter += 1
        timer.turn_id = self._turn_counter
        turn = Turn(
            self._turn_counter, timer, text, speaker=speaker, utterance_id=line or self._lines.new(), samples=samples,
            speculation=speculation,
        )
        self._turn = turn
        self.turns.append(turn)
        self.fsm.fire(Event.UTTERANCE)
        if speaker and (self._onsets.speaking(speaker.participant_id) or self._decisions.undecided(speaker.participant_id) > 1):
            # They went on talking while this was transcribed (and may even have finished a later utterance,
            # still being decided): hold the reply (paused) until their new words are heard — a continuation
            # folds into this question, a backchannel or a blip resumes it.
            self._playout.pause()
            self.fsm.fire(Event.SPEECH_START)
        turn.task = asyncio.create_task(self._runner.run(turn), name=f"turn-{turn.id}")

    def _turn_ended(self, turn: Turn, spoken: bool) -> None:
        self.fsm.fire(Event.REPLY_DONE if spoken else Event.FAILED)

    def _caller_going_on(self, turn: Turn) -> bool:
        """Whether ``turn``'s asker is speaking on in its question (nobody has heard its reply yet)."""
        return turn.speaker is not None and self.asking.unheard_turn_of(turn.speaker) is turn and self.state == State.PAUSED

    def _audio_started(self, turn: Turn) -> None:
        self.fsm.fire(Event.AUDIO_STARTED)
        self._log.info("turn %d metrics: %s", turn.id, " ".join(f"{k}={v}" for k, v in turn.timer.as_metrics().items()))

    # ---- driven by a client (the Realtime API: turns it commits, items it creates, replies it cancels) ----

    async def transcribe(self, samples: np.ndarray) -> str:
        """The text of 16 kHz mono ``samples`` in this room's language (``BackendError`` on failure)."""
        return (await self.speech.transcribe(samples)).strip()

    def remember(self, role: str, content: str) -> ChatMessage:
        """Add a message to the conversation without answering it; returns it (for ``forget``)."""
        return self.conversation.add(ChatMessage(role=role, content=content))  # type: ignore[arg-type]

    def forget(self, message: ChatMessage) -> bool:
        """Take a message out of the conversation (False if it is not in it)."""
        return self.conversation.forget(message)

    def reply_now(self) -> int:
        """Answer the conversation as it stands now (a client asked for a response); returns the turn id.
        A reply in progress is cancelled first."""
        self.cancel_reply("the client asked for a new response")
        now = time.monotonic()
        timer = TurnTimer(0, now, now)
        timer.stt_done_at = now
        self._start_turn(timer, "", None)
        return self._turn_counter

    def cancel_reply(self, reason: str = "cancelled by the client") -> bool:
        """Stop the reply in progress where playout is (what was heard stays in the history); False if none."""
        if self._turn is None or not self._turn.active:
            return False
        self._interrupt(reason)
        if self.state in (State.THINKING, State.SPEAKING):  # nobody talks over it: the reply is simply over
            self.fsm.fire(Event.REPLY_DONE)
        return True

    def truncate_reply(self, turn_id: int, audio_end_ms: int) -> str | None:
        """Keep in the history only the part of turn ``turn_id``'s reply heard in its first ``audio_end_ms``
        of audio (the client says how much it played); returns that text, ``None`` if the turn is unknown."""
        turn = next((t for t in self.turns if t.id == turn_id), None)
        if turn is None or not turn.segments:
            return None
        played = turn.segments[0].start + audio_end_ms * WEBRTC_RATE // 1000  # playout positions
        heard = heard_prefix(turn.reply, heard_chars(turn.segments, played)).strip()
        kept = ChatMessage(role="assistant", content=heard)
        if self.conversation.replace(turn.assistant_message, kept):
            turn.assistant_message = kept
        return heard

    def use_vad(self, vad: VadSettings) -> None:
        """Turn detection for listeners started from now on (a Realtime client's ``turn_detection``)."""
        self._settings = self._settings.model_copy(update={"vad": vad})
        self._ahead.use_thresholds(vad.text_turn_threshold, vad.text_turn_min_words, vad.text_turn_thresholds)

    async def close(self) -> None:
        """Cancel everything in flight and stop speaking; nothing starts afterwards."""
        self.closed = True
        tasks = [t for t in (*self._decisions.tasks, *self.hearing.close(), self._turn.task if self._turn else None) if t]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        await self._ahead.close()
        self._playout.flush()
        self.fsm.reset()


def _backchannels_for(language: str, by_language: dict[str, list[str]]) -> list[str]:
    """The backchannel words of a room's language (an auto room: those of every language it tells apart)."""
    if language == "auto":
        return [word for code in AUTO_LANGUAGES for word in by_language.get(code, [])]
    return by_language.get(language.split("-")[0], [])

