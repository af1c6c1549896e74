"""Agent events (``parley.agents.events``) as the messages clients receive (``parley.signaling.messages``)."""

from __future__ import annotations

from typing import Callable

from parley.agents import events as ev
from parley.signaling import messages as m


def to_wire(event: ev.AgentEvent, agent_id: str, agent_name: str) -> m.ServerMessage:
    """The wire message for one agent event of the agent ``agent_id`` (shown as ``agent_name``)."""
    match event:
        case ev.StateChanged(state=state, turn_id=turn_id):
            return m.AgentState(state=state.value, turn_id=turn_id)
        case ev.CallerTranscript(speaker=speaker, turn_id=turn_id, text=text, final=final, utterance_id=line):
            return m.Transcript(
                speaker="user", participant_id=speaker.participant_id, name=speaker.name, turn_id=turn_id,
                text=text, final=final, utterance_id=line,
            )
        case ev.ReplyTranscript(turn_id=turn_id, text=text, final=final):
            return m.Transcript(
                speaker="agent", participant_id=agent_id, name=agent_name, turn_id=turn_id, text=text, final=final,
            )
        case ev.ReplyResumed(turn_id=turn_id):
            return m.AgentResumed(turn_id=turn_id)
        case ev.ReplyInterrupted(turn_id=turn_id, heard_text=heard):
            return m.AgentInterrupted(turn_id=turn_id, heard_text=heard)
        case ev.TurnLatency(turn_id=turn_id, metrics=metrics):
            return m.TurnMetrics(turn_id=turn_id, **metrics)
        case ev.AgentFailure(code=code, message=message):
            return m.Error(code=code, message=message)
    raise TypeError(f"no wire message for {type(event).__name__}")


def broadcaster(send: Callable[[m.ServerMessage], None], agent_id: str, agent_name: Callable[[], str]) -> Callable[[ev.AgentEvent], None]:
    """An ``emit`` for ``AgentSession`` that sends each event to ``send`` as its wire message."""
    return lambda event: send(to_wire(event, agent_id, agent_name()))
