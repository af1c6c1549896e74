"""Logic around rooms that needs no network: addressing the agent, join tokens, API keys, slot timestamps."""

import time

import jwt
import pytest

from parley.agents.profile import AgentProfile, is_addressed
from parley.core.errors import AuthError
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


CHROME_OFFER = """v=0\r
o=- 1 2 IN IP4 127.0.0.1\r
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110\r
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r
a=rtpmap:111 opus/48000/2\r
a=rtcp-fb:111 transport-cc\r
a=fmtp:111 minptime=10;useinbandfec=1\r
a=rtpmap:63 red/48000/2\r
a=rtpmap:9 G722/8000\r
a=rtpmap:0 PCMU/8000\r
a=rtpmap:8 PCMA/8000\r
a=rtpmap:13 CN/8000\r
a=rtpmap:110 telephone-event/48000\r
"""

AIORTC_REOFFER = """v=0\r
o=- 3 3 IN IP4 0.0.0.0\r
a=group:BUNDLE 0 1\r
m=audio 5000 UDP/TLS/RTP/SAVPF 96 9 0 8\r
a=sendrecv\r
a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r
a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r
a=mid:0\r
a=rtpmap:96 opus/48000/2\r
a=rtpmap:9 G722/8000\r
a=rtpmap:0 PCMU/8000\r
a=rtpmap:8 PCMA/8000\r
m=audio 5000 UDP/TLS/RTP/SAVPF 96 9 0 8 100\r
a=sendonly\r
a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r
a=extmap:3 urn:example:not-in-the-client-offer\r
a=mid:1\r
a=rtpmap:96 opus/48000/2\r
a=fmtp:96 useinbandfec=1\r
a=rtpmap:9 G722/8000\r
a=rtpmap:0 PCMU/8000\r
a=rtpmap:8 PCMA/8000\r
a=rtpmap:100 unknowncodec/90000\r
"""


def test_reoffer_keeps_the_clients_rtp_numbering():
    from parley.server.sdp_align import RtpNumbering

    aligned = RtpNumbering(CHROME_OFFER).align_offer(AIORTC_REOFFER).splitlines()
    media = [line for line in aligned if line.startswith("m=")]
    assert media == ["m=audio 5000 UDP/TLS/RTP/SAVPF 111 9 0 8"] * 2  # opus renumbered, unknown codec dropped
    assert aligned.count("a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid") == 2
    assert "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level" in aligned
    assert not any("not-in-the-client-offer" in line or "unknowncodec" in line for line in aligned)
    assert "a=fmtp:111 useinbandfec=1" in aligned and "a=rtpmap:111 opus/48000/2" in aligned
    assert "a=group:BUNDLE 0 1" in aligned and aligned.index("a=group:BUNDLE 0 1") < aligned.index(media[0])


def test_reoffer_is_unchanged_for_a_client_with_aiortc_numbering():
    from parley.server.sdp_align import RtpNumbering

    first = AIORTC_REOFFER.split("m=audio 5000 UDP/TLS/RTP/SAVPF 96 9 0 8 100")[0]
    numbering = RtpNumbering(first)
    assert numbering.align_offer(first) == first
