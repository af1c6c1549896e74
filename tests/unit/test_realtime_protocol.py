"""The Realtime protocol's wire logic without a server: session updates in both shapes, typed refusals, event names."""

from __future__ import annotations

import pytest

from parley.signaling import realtime_protocol as rp


def test_a_ga_session_update_sets_instructions_voice_turns_and_transcription():
    config = rp.apply_session_update(rp.SessionConfig(), {
        "type": "realtime", "instructions": "Be brief.",
        "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 24000}, "transcription": None,
                      "turn_detection": {"type": "server_vad", "threshold": 0.6, "prefix_padding_ms": 200, "silence_duration_ms": 700}},
            "output": {"voice": "alloy"},
        },
    })
    assert config.instructions == "Be brief." and config.voice == "default"  # OpenAI's voices mean the server's own
    assert config.turn_detection == rp.TurnDetection(type="server_vad", threshold=0.6, prefix_padding_ms=200, silence_duration_ms=700)
    assert config.transcribe_input is False
    manual = rp.apply_session_update(config, {"audio": {"input": {"turn_detection": None}}})
    assert manual.turn_detection is None and manual.instructions == "Be brief."  # what the update leaves out stays


def test_a_beta_session_update_reads_the_same():
    config = rp.apply_session_update(rp.SessionConfig(), {
        "modalities": ["audio", "text"], "instructions": "Hi.", "voice": "kokoro:jf_alpha", "input_audio_format": "pcm16",
        "input_audio_transcription": {"model": "whisper-1"}, "turn_detection": None,
    })
    assert (config.instructions, config.voice, config.turn_detection, config.transcribe_input) == ("Hi.", "kokoro:jf_alpha", None, True)
    assert config.transcription_model == "whisper-1"


@pytest.mark.parametrize(("session", "param"), [
    ({"audio": {"input": {"format": {"type": "audio/pcmu"}}}}, "session.audio.input.format"),
    ({"audio": {"output": {"format": {"type": "audio/pcm", "rate": 16000}}}}, "session.audio.output.format"),
    ({"input_audio_format": "g711_ulaw"}, "session.input_audio_format"),
    ({"output_modalities": ["text"]}, "session.output_modalities"),
    ({"turn_detection": {"type": "server_vad", "threshold": 3}}, "session.turn_detection"),
    ({"turn_detection": "on"}, "session.turn_detection"),
    ({"voice": ""}, "session.voice"),
])
def test_what_parley_cannot_do_is_refused_with_the_parameter_named(session, param):
    with pytest.raises(rp.RealtimeProtocolError) as refused:
        rp.apply_session_update(rp.SessionConfig(), session)
    assert refused.value.code == "invalid_value" and refused.value.param == param


@pytest.mark.parametrize(("event", "code"), [
    ({"type": "nope"}, "unknown_event"),
    ([1, 2], "invalid_event"),
    ({"type": "input_audio_buffer.append"}, "invalid_value"),
    ({"type": "input_audio_buffer.append", "audio": "A" * (rp.MAX_APPEND_BYTES + 4)}, "audio_too_large"),
    ({"type": "conversation.item.create", "item": {"type": "message", "role": "robot", "content": [{"type": "input_text"}]}}, "invalid_value"),
    ({"type": "conversation.item.truncate", "item_id": "x", "audio_end_ms": -1}, "invalid_value"),
])
def test_malformed_client_events_get_typed_codes(event, code):
    with pytest.raises(rp.RealtimeProtocolError) as refused:
        rp.parse_client_event(event)
    assert refused.value.code == code


def test_client_events_are_typed():
    event = rp.parse_client_event({"type": "response.cancel", "event_id": "e1", "response_id": "resp_1", "extra": 1})
    assert isinstance(event, rp.ResponseCancel) and event.event_id == "e1" and event.response_id == "resp_1"


def test_beta_clients_get_beta_names_and_no_ga_only_events():
    ga, beta = rp.ServerEvents(beta=False), rp.ServerEvents(beta=True)
    assert ga.make("response.output_audio.delta", delta="")["type"] == "response.output_audio.delta"
    assert beta.make("response.output_audio.delta", delta="")["type"] == "response.audio.delta"
    assert beta.make("conversation.item.added")["type"] == "conversation.item.created"
    assert beta.make("conversation.item.done") is None and ga.make("conversation.item.done") is not None
    assert beta.assistant_item("i", "t", "completed")["content"][0]["type"] == "audio"
    assert ga.assistant_item("i", "t", "completed")["content"][0]["type"] == "output_audio"


def test_session_objects_are_what_the_official_sdk_reads():
    openai = pytest.importorskip("openai")
    from openai.types.beta.realtime.session import Session as BetaSession
    from openai.types.realtime.realtime_session_create_request import RealtimeSessionCreateRequest

    for detection in (rp.TurnDetection(), rp.TurnDetection(type="semantic_vad"), None):
        config = rp.SessionConfig(turn_detection=detection, instructions="x")
        RealtimeSessionCreateRequest.model_validate(rp.session_object(config, "sess_1", beta=False))
        BetaSession.model_validate(rp.session_object(config, "sess_1", beta=True))
    assert openai.__version__ == "3.51.0"
