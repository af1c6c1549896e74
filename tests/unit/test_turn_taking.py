"""Turn-taking logic: the state machine, backchannels, and cutting a reply to what was heard."""

import logging

import numpy as np
import pytest

from parley.agents.backchannel import DEFAULT_BACKCHANNELS, is_backchannel, real_word_count
from parley.agents.stage_timer import TurnTimer
from parley.agents.reply_turn import Segment, Turn, heard_chars, heard_prefix
from parley.agents.dialogue_state import TRANSITIONS, Event, State, TurnStateMachine
from parley.server.playout import PlayoutTrack

EN = DEFAULT_BACKCHANNELS["en"]


def machine() -> tuple[TurnStateMachine, list]:
    changes: list = []
    fsm = TurnStateMachine(lambda a, b, e: changes.append((a, b, e)), logging.getLogger("test"))
    return fsm, changes


def run(events: list[Event]) -> list[State]:
    fsm, _ = machine()
    return [fsm.fire(e) for e in events]


def test_a_plain_turn():
    assert run([Event.SPEECH_START, Event.UTTERANCE, Event.AUDIO_STARTED, Event.REPLY_DONE]) == [
        State.USER_SPEAKING, State.THINKING, State.SPEAKING, State.LISTENING]


def test_barge_in_while_speaking():
    assert run([Event.SPEECH_START, Event.UTTERANCE, Event.AUDIO_STARTED, Event.SPEECH_START, Event.BARGE_IN,
                Event.UTTERANCE]) == [State.USER_SPEAKING, State.THINKING, State.SPEAKING, State.PAUSED,
                                      State.USER_SPEAKING, State.THINKING]


def test_backchannel_resumes_speaking_or_thinking():
    assert run([Event.UTTERANCE, Event.AUDIO_STARTED, Event.SPEECH_START, Event.RESUME_SPEAKING])[-1] == State.SPEAKING
    assert run([Event.UTTERANCE, Event.SPEECH_START, Event.RESUME_THINKING])[-1] == State.THINKING


def test_audio_held_while_paused():
    assert run([Event.UTTERANCE, Event.SPEECH_START, Event.AUDIO_STARTED])[-1] == State.PAUSED


@pytest.mark.parametrize("state", list(State))
def test_every_state_has_a_way_back_to_listening(state):
    """From every state, some sequence of events (including a cancellation or failure) leads back to listening."""
    seen, frontier = {state}, [state]
    while frontier:
        current = frontier.pop()
        for (source, _event), target in TRANSITIONS.items():
            if source == current and target not in seen:
                seen.add(target)
                frontier.append(target)
    assert State.LISTENING in seen


@pytest.mark.parametrize("state", [State.THINKING, State.SPEAKING, State.PAUSED])
def test_cancellation_or_failure_from_every_busy_state(state):
    for event in (Event.CANCELLED, Event.FAILED):
        fsm, changes = machine()
        fsm.state = state
        assert fsm.fire(event) in (State.LISTENING, State.USER_SPEAKING)
        assert changes and changes[-1][2] == event


def test_undeclared_events_change_nothing():
    fsm, changes = machine()
    assert fsm.fire(Event.REPLY_DONE) == State.LISTENING and changes == []
    assert fsm.fire(Event.RESUME_SPEAKING) == State.LISTENING


@pytest.mark.parametrize("text", ["Mhm.", "Okay.", "Yeah, yeah.", "Uh-huh", "I see.", "Right, okay!", "", "..."])
def test_backchannels(text):
    assert is_backchannel(text, EN)


@pytest.mark.parametrize("text", ["Wait, stop.", "Okay, but what about Spain?", "Yes, tell me about Rome", "no", "42"])
def test_real_words_are_not_backchannels(text):
    assert not is_backchannel(text, EN)


def test_real_word_count():
    assert real_word_count("Okay mhm", EN) == 0
    assert real_word_count("Okay, what about Spain?", EN) == 3


def test_chinese_backchannels():
    assert is_backchannel("嗯嗯。", DEFAULT_BACKCHANNELS["zh"])
    assert not is_backchannel("等一下", DEFAULT_BACKCHANNELS["zh"])


def test_heard_chars_interpolates_inside_a_segment():
    segs = [Segment(0, 1000, 0, 10), Segment(1000, 3000, 11, 31)]
    assert heard_chars(segs, 0) == 0
    assert heard_chars(segs, 500) == 5
    assert heard_chars(segs, 1000) == 10
    assert heard_chars(segs, 2000) == 21
    assert heard_chars(segs, 5000) == 31


def test_heard_prefix_backs_off_to_a_whole_word():
    reply = "The capital of France is Paris."
    assert heard_prefix(reply, 9) == "The"  # "The capi" -> "The"
    assert heard_prefix(reply, 11) == "The capital"
    assert heard_prefix(reply, 100) == reply


def test_turn_remembers_only_what_was_heard():
    turn = Turn(1, TurnTimer(1, 0, 0), "q", generated=["The capital ", "of France, ", "is Paris."])
    turn.segments = [Segment(0, 48_000, 0, 22), Segment(48_000, 96_000, 23, 32)]
    assert turn.remembered_reply() == "The capital of France, is Paris."
    turn.interrupted_at = 24_000
    heard = turn.remembered_reply()
    assert heard == "The capital" and turn.reply.startswith(heard) and len(heard) < len(turn.reply)


async def test_playout_pause_holds_audio_and_resume_continues():
    track = PlayoutTrack()
    ramp = np.linspace(0.1, 0.5, 960 * 3).astype(np.float32)
    track.push(ramp)
    first = (await track.recv()).to_ndarray().reshape(-1)
    track.pause()
    assert not (await track.recv()).to_ndarray().any()
    assert track.buffer.buffered == 960 * 2
    track.resume()
    second = (await track.recv()).to_ndarray().reshape(-1)
    assert second[0] > first[-1]  # continues where it paused, nothing skipped
    track.stop()
