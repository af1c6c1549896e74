"""The agent's own events become the wire messages clients know (the agent never builds them itself)."""

import typing

import pytest

from parley.agents import events as ev
from parley.agents.profile import Speaker
from parley.agents.dialogue_state import State
from parley.signaling import messages as m
from parley.signaling.agent_wire import to_wire

ADA = Speaker("p1", "Ada")
EXAMPLES: list[tuple[ev.AgentEvent, m.ServerMessage]] = [
    (ev.StateChanged(State.THINKING, 3), m.AgentState(state="thinking", turn_id=3)),
    (ev.CallerTranscript(ADA, 3, "Hello", True, 7),
     m.Transcript(speaker="user", participant_id="p1", name="Ada", turn_id=3, text="Hello", final=True, utterance_id=7)),
    (ev.ReplyTranscript(3, "Hi there", False),
     m.Transcript(speaker="agent", participant_id="agent-1", name="Parley", turn_id=3, text="Hi there", final=False)),
    (ev.ReplyResumed(3), m.AgentResumed(turn_id=3)),
    (ev.ReplyInterrupted(3, "Hi"), m.AgentInterrupted(turn_id=3, heard_text="Hi")),
    (ev.AgentFailure("stt_failed", "speech recognition failed"), m.Error(code="stt_failed", message="speech recognition failed")),
]


@pytest.mark.parametrize(("event", "wire"), EXAMPLES, ids=lambda x: type(x).__name__)
def test_each_event_has_its_wire_message(event, wire):
    assert to_wire(event, "agent-1", "Parley") == wire


def test_turn_latency_carries_every_stage():
    metrics = {
        "endpoint_wait_ms": 200.0, "stt_ms": 300.0, "llm_first_token_ms": 150.0, "llm_first_chunk_ms": 250.0,
        "tts_first_audio_ms": 40.0, "playout_wait_ms": 20.0, "first_audio_sent_ms": 810.0, "end_of_turn_ms": 60.0,
        "sentence_end_ms": 120.0,
    }
    wire = to_wire(ev.TurnLatency(4, metrics), "agent-1", "Parley")
    assert isinstance(wire, m.TurnMetrics) and wire.model_dump(exclude={"type", "turn_id"}) == metrics


def test_every_agent_event_is_mapped():
    kinds = typing.get_args(ev.AgentEvent)
    covered = {type(e) for e, _ in EXAMPLES} | {ev.TurnLatency}
    assert set(kinds) == covered
