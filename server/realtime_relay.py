"""Agent events → Realtime server events: the responses, the conversation's items, the agent's voice as deltas.

``AgentSession`` reports what it does (state changes, transcripts, interruptions); ``AgentEventRelay``
tells the client in the Realtime protocol's words: speech started/stopped and committed, input
transcriptions, one response per agent turn (its item, content part, transcript and audio deltas,
``response.done`` with completed / cancelled / failed).
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from typing import Any, Callable

from parley.agents import events as ev
from parley.agents.dialogue_state import State
from parley.server.playout import PlayoutTrack
from parley.server.realtime_audio import VoiceOut
from parley.signaling import realtime_protocol as rp

VOICE_CHUNK_MS = 100  # the agent's voice goes out in deltas of this much audio
_BUSY_STATES = (State.THINKING, State.SPEAKING, State.PAUSED)
Post = Callable[["dict[str, Any] | None"], None]


@dataclass
class Response:
    """One response: the agent turn it is, its output item, what it has said."""

    id: str
    turn_id: int
    item_id: str
    started: bool = False  # its output item and content part were announced
    transcript: str = ""
    closed: bool = False

    def at(self) -> dict[str, Any]:
        """Where this response's audio and transcript events point: its one item and content part."""
        return {"response_id": self.id, "item_id": self.item_id, "output_index": 0, "content_index": 0}


@dataclass
class Items:
    """The conversation's items as the client knows them, and what each is in the session."""

    user_by_line: dict[int, str] = field(default_factory=dict)  # caller's utterance line → item id
    turn_by_item: dict[str, int] = field(default_factory=dict)  # assistant item → its turn
    message_by_item: dict[str, Any] = field(default_factory=dict)  # items the client created → their ChatMessage
    last_item: str | None = None


class AgentEventRelay:
    """Turns one session's agent events into server events (``post``), keeping responses and items."""

    def __init__(
        self, post: Post, events: rp.ServerEvents, config: Callable[[], rp.SessionConfig], input_ms: Callable[[], int],
        preroll_ms: int, playout: PlayoutTrack,
    ) -> None:
        self.post, self.events = post, events
        self._config, self._input_ms, self._preroll_ms, self._playout = config, input_ms, preroll_ms, playout
        self.items = Items()
        self.responses: dict[int, Response] = {}
        self.client_turns: set[int] = set()  # turns a response.create started (no speech item of their own)
        self.cancel_reason = "turn_detected"  # why the next interrupted response ends
        self._speech_item: str | None = None  # the caller's utterance being heard now
        self._committed: str | None = None  # the last utterance that became a question
        self._failed = False
        self._voice = VoiceOut()

    def open_responses(self) -> list["Response"]:
        return [r for r in self.responses.values() if not r.closed]

    def transcribed(self, item_id: str, text: str, seconds: float) -> None:
        if self._config().transcribe_input:
            self.post(self.events.make(
                "conversation.item.input_audio_transcription.completed", item_id=item_id, content_index=0, transcript=text,
                usage={"type": "duration", "seconds": round(seconds, 3)},
            ))
        self.post(self.events.make("conversation.item.done", item=self.events.user_item(item_id, text)))

    def on_agent_event(self, event: ev.AgentEvent) -> None:
        if isinstance(event, ev.StateChanged):
            self._on_state(event.state, event.turn_id)
        elif isinstance(event, ev.CallerTranscript):
            if event.final:
                self._on_caller_final(event)
        elif isinstance(event, ev.ReplyTranscript):
            self._on_reply_text(event.turn_id, event.text, event.final)
        elif isinstance(event, ev.ReplyInterrupted):
            response = self.responses.get(event.turn_id)
            if response is not None and not response.closed:
                self._flush_voice(response)
                response.transcript = event.heard_text
                self.finish(response, "cancelled", self.cancel_reason)
        elif isinstance(event, ev.AgentFailure):
            self._failed = True
            self.post(self.events.error(event.code, event.message, kind="server_error"))

    def _on_state(self, state: State, turn_id: int | None) -> None:
        if state in (State.USER_SPEAKING, State.PAUSED) and self._speech_item is None and self._config().turn_detection is not None:
            self._speech_item = rp.new_id("item")
            start = max(0, self._input_ms() - self._preroll_ms)
            self.post(self.events.make("input_audio_buffer.speech_started", audio_start_ms=start, item_id=self._speech_item))
        elif state not in (State.USER_SPEAKING, State.PAUSED) and self._speech_item is not None:
            item_id, self._speech_item = self._speech_item, None
            self.post(self.events.make("input_audio_buffer.speech_stopped", audio_end_ms=self._input_ms(), item_id=item_id))
            if state == State.THINKING:  # the utterance became a question
                previous, self.items.last_item = self.items.last_item, item_id
                self._committed = item_id
                self.post(self.events.make("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous))
        # A turn that ended without its last words (failed, folded into the next question): checked once
        # the session is done reacting (an interruption reports what was heard right after its state change).
        failed, self._failed = self._failed, False
        asyncio.get_running_loop().call_soon(self._close_stale, state, turn_id, failed)
        if state == State.THINKING and turn_id is not None:
            self.open_response(turn_id)

    def _close_stale(self, state: State, turn_id: int | None, failed: bool) -> None:
        for response in list(self.responses.values()):
            if response.closed or (state in _BUSY_STATES and turn_id == response.turn_id):
                continue
            self._flush_voice(response)
            self.finish(response, "failed" if failed else "cancelled", None if failed else self.cancel_reason)

    def open_response(self, turn_id: int) -> None:
        if turn_id in self.responses:
            return
        response = Response(rp.new_id("resp"), turn_id, rp.new_id("item"))
        self.responses[turn_id] = response
        self.items.turn_by_item[response.item_id] = turn_id
        self.post(self.events.make("response.created", response=self.events.response(response.id, "in_progress", [])))

    def _on_caller_final(self, event: ev.CallerTranscript) -> None:
        if event.turn_id in self.client_turns:
            return
        item_id = self.items.user_by_line.get(event.utterance_id)
        fresh = item_id is None
        if item_id is None:
            item_id = self._speech_item or self._committed or rp.new_id("item")
            self.items.user_by_line[event.utterance_id] = item_id
        if fresh:
            self.post(self.events.make("conversation.item.added", item=self.events.user_item(item_id, None)))
        self.transcribed(item_id, event.text, 0.0)

    def _start(self, response: Response) -> None:
        if response.started:
            return
        response.started = True
        item = self.events.assistant_item(response.item_id, None, "in_progress")
        previous, self.items.last_item = self.items.last_item, response.item_id
        self.post(self.events.make("response.output_item.added", response_id=response.id, output_index=0, item=item))
        self.post(self.events.make("conversation.item.added", item=item, previous_item_id=previous))
        self.post(self.events.make("response.content_part.added", **response.at(), part={"type": "audio", "transcript": ""}))

    def _on_reply_text(self, turn_id: int, text: str, final: bool) -> None:
        response = self.responses.get(turn_id)
        if response is None or response.closed:
            return
        self._start(response)
        delta = text[len(response.transcript):] if text.startswith(response.transcript) else ""
        if delta:
            response.transcript = text
            self.post(self.events.make("response.output_audio_transcript.delta", **response.at(), delta=delta))
        if final:
            self._flush_voice(response)
            response.transcript = text
            self.finish(response, "completed", None)

    def finish(self, response: Response, status: str, reason: str | None) -> None:
        response.closed = True
        output: list[dict[str, Any]] = []
        if response.started:
            item_status = "completed" if status == "completed" else "incomplete"
            item = self.events.assistant_item(response.item_id, response.transcript, item_status)
            output = [item]
            self.post(self.events.make("response.output_audio.done", **response.at()))
            self.post(self.events.make("response.output_audio_transcript.done", **response.at(), transcript=response.transcript))
            self.post(self.events.make("response.content_part.done", **response.at(),
                                       part={"type": "audio", "transcript": response.transcript}))
            self.post(self.events.make("response.output_item.done", response_id=response.id, output_index=0, item=item))
            self.post(self.events.make("conversation.item.done", item=item))
        self.post(self.events.make("response.done", response=self.events.response(response.id, status, output, reason)))

    def _current_response(self) -> Response | None:
        return next((r for r in reversed(list(self.responses.values())) if not r.closed), None)

    async def pump_voice(self) -> None:
        """Play the agent's voice in real time (as a WebRTC track would) and send it as audio deltas."""
        stats = self._playout.stats
        while True:
            before = stats.audio_frames_sent
            frame = await self._playout.recv()
            if stats.audio_frames_sent == before:
                continue  # silence: nothing queued, or paused while the caller speaks
            response = self._current_response()
            if response is None:
                continue
            self._voice.add(frame.to_ndarray().reshape(-1))
            if self._voice.ms >= VOICE_CHUNK_MS:
                self._flush_voice(response)

    def _flush_voice(self, response: Response) -> None:
        data = self._voice.take()
        if data is None:
            return
        self._start(response)
        self.post(self.events.make("response.output_audio.delta", **response.at(), delta=base64.b64encode(data).decode("ascii")))
