"""Logic around rooms that needs no network: addressing the agent, join tokens, API keys, slot timestamps."""

import time

import jwt
import pytest

from parley.agents.profile import AgentProfile, is_addressed
from parley.server.errors import AuthError
from parley.server.forwarding import AudioPublisher, ForwardingSlot
from parley.signaling.auth import TokenAuthority, check_api_key


@pytest.mark.parametrize(
    ("text", "name", "addressed"),
    [
        ("Parley, what time is it?", "Parley", True),
        ("hey parlay can you help", "Parley", True),  # what Whisper often makes of the name
        ("What do you think, Parley's opinion?", "Parley", True),
        ("What time is it?", "Parley", False),
        ("Pass the parsley please", "Parley", False),
        ("Ask Doctor Who about it", "Doctor Who", True),
        ("Ask the doctor about it", "Doctor Who", False),
    ],
)
def test_agent_is_addressed_by_name(text, name, addressed):
    assert is_addressed(text, name) is addressed


def test_reply_policy_auto_turns_to_addressed_with_two_people():
    profile = AgentProfile("Parley", "Be brief.", "en", "auto", tts=None)  # type: ignore[arg-type]
    assert not profile.group_mode(1) and profile.group_mode(2)
    assert AgentProfile("P", "x", "en", "always", tts=None).group_mode(5) is False  # type: ignore[arg-type]
    assert "group call" in profile.prompt(True) and profile.prompt(False) == "Be brief."


def test_tokens_round_trip_and_refusals():
    authority = TokenAuthority("s" * 32, default_ttl_s=60, max_ttl_s=120)
    token, expires_at = authority.mint("room-1", "user-7", "Ada")
    grant = authority.verify(token, "room-1")
    assert (grant.room, grant.identity, grant.name) == ("room-1", "user-7", "Ada")
    assert 55 <= expires_at - time.time() <= 61
    _, capped = authority.mint("room-1", "user-7", ttl_s=10_000)
    assert capped - time.time() <= 121  # never past max_ttl_s
    codes = {}
    for label, candidate, room in [
        ("missing", None, None), ("garbage", "abc", None), ("wrong room", token, "room-2"),
        ("other secret", TokenAuthority("t" * 32, 60, 120).mint("room-1", "u")[0], None),
        ("expired", authority.mint("room-1", "u", ttl_s=-1)[0], None),
        ("no room claim", jwt.encode({"sub": "u", "exp": time.time() + 60, "iss": "parley"}, "s" * 32, "HS256"), None),
    ]:
        with pytest.raises(AuthError) as info:
            authority.verify(candidate, room)
        codes[label] = info.value.code
    assert codes == {
        "missing": "token_missing", "garbage": "token_invalid", "wrong room": "token_wrong_room",
        "other secret": "token_invalid", "expired": "token_expired", "no room claim": "token_invalid",
    }


def test_api_key_check():
    check_api_key("k" * 20, "Bearer " + "k" * 20)
    for configured, header in [("", "Bearer x"), ("key", None), ("key", "key"), ("key", "Bearer other"), ("key", "Basic key")]:
        with pytest.raises(AuthError):
            check_api_key(configured, header)


async def test_slot_keeps_rtp_timestamps_continuous_across_sources():
    slot = ForwardingSlot()
    first, second = AudioPublisher("a"), AudioPublisher("b")
    slot.attach(first)
    for ts in (1000, 1960, 2920):
        first.publish(b"x", ts)
    before = [(await slot.recv()).pts for _ in range(3)]
    assert [b - before[0] for b in before] == [0, 960, 1920]
    first.publish(b"x", 3880)
    slot.attach(second)  # the first source left; the next one reuses the m-line
    assert not first.subscribers and second.subscribers == {slot}
    second.publish(b"y", 5_000_000)
    second.publish(b"y", 5_000_960)
    after = [(await slot.recv()).pts for _ in range(2)]  # the first source's queued packet was dropped
    assert after[1] - after[0] == 960
    assert after[0] - before[-1] == 2 * 960  # right after the last packet, not at the new source's clock
    slot.stop()
    assert not second.subscribers
