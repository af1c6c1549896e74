import json

import pytest

from parley.core.errors import SignalingError
from parley.signaling import messages as m


def code_of(raw) -> str:
    with pytest.raises(SignalingError) as info:
        m.parse_client_message(raw)
    return info.value.code


def test_valid_messages_parse_to_their_types():
    assert isinstance(m.parse_client_message('{"type": "join", "room": "r1"}'), m.Join)
    assert m.parse_client_message('{"type": "offer", "sdp": "v=0"}').sdp == "v=0"
    cand = m.parse_client_message('{"type": "candidate", "candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}')
    assert isinstance(cand, m.Candidate)
    assert isinstance(m.parse_client_message('{"type": "leave"}'), m.Leave)
    assert isinstance(m.parse_client_message('{"type": "answer", "sdp": "v=0"}'), m.ClientAnswer)
    assert m.parse_client_message('{"type": "join", "token": "a.b.c", "name": "Ada"}').token == "a.b.c"


def test_server_offer_and_participant_events_serialize():
    offer = json.loads(m.ServerOffer(sdp="v=0", tracks={"0": "agent-1", "1": "p2"}).model_dump_json())
    assert offer == {"type": "offer", "sdp": "v=0", "tracks": {"0": "agent-1", "1": "p2"}}
    info = m.ParticipantInfo(participant_id="p2", identity="u2", name="Bo", kind="human", joined_at=1.0)
    assert json.loads(m.ParticipantJoined(participant=info).model_dump_json())["participant"]["name"] == "Bo"
    assert json.loads(m.ParticipantLeft(participant_id="p2").model_dump_json())["type"] == "participant.left"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "invalid_message"),
        ('"join"', "invalid_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"room": "x"}', "unknown_type"),
        ('{"type": "offer"}', "invalid_message"),
        ('{"type": "offer", "sdp": 42}', "invalid_message"),
        ('{"type": "join", "room": "bad room!"}', "invalid_message"),
        ('{"type": "join", "token": 7}', "invalid_message"),
        ('{"type": "answer"}', "invalid_message"),
        ('{"type": "join", "extra": 1}', "invalid_message"),
        ('{"type": "candidate", "candidate": "x", "sdpMLineIndex": -1}', "invalid_message"),
        ("[" * 100_000 + "]" * 100_000, "invalid_json"),
        (json.dumps({"type": "offer", "sdp": "x" * 300_000}), "message_too_large"),
    ],
)
def test_bad_messages_get_stable_codes(raw, code):
    assert code_of(raw) == code


def test_error_message_names_the_missing_field():
    with pytest.raises(SignalingError) as info:
        m.parse_client_message('{"type": "offer"}')
    assert "sdp" in str(info.value)


def test_server_messages_serialize_with_their_type():
    metrics = m.TurnMetrics(
        turn_id=1, endpoint_wait_ms=1, stt_ms=2, llm_first_token_ms=3, llm_first_chunk_ms=4,
        tts_first_audio_ms=5, playout_wait_ms=6, first_audio_sent_ms=7,
    )
    assert json.loads(metrics.model_dump_json())["type"] == "turn.metrics"
    assert json.loads(m.AgentState(state="thinking").model_dump_json())["type"] == "agent.state"
