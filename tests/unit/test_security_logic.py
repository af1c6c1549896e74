"""The logic behind the token-holder guarantees: offer shapes, candidate addresses, dev mode's address,
the listener's bounded audio, and an agent session that starts nothing once closed."""

from __future__ import annotations

import asyncio
import fractions
from types import SimpleNamespace

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from parley.agents.endpointer import Utterance
from parley.agents.events import StateChanged
from parley.agents.stage_timer import EarlyTranscriptionStats, SpeculationStats
from parley.agents.profile import Speaker
from parley.agents.session import AgentSession
from parley.server.audio_backlog import BoundedAudioTrack
from parley.server.candidates import check_candidate_address
from parley.core.net import is_loopback_host
from parley.server.config import load_settings
from parley.core.errors import ConfigError, SignalingError
from parley.server.offer_check import check_offer_sdp, media_sections
from parley.server.playout import PlayoutTrack

HEAD = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
AUDIO = "m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=mid:{mid}\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n"
VIDEO = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:{mid}\r\na=rtpmap:96 VP8/90000\r\n"
DATA = "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:{mid}\r\n"


def _code(sdp: str, negotiated: list[str | None] | None = None) -> str | None:
    try:
        check_offer_sdp(sdp, negotiated)
    except SignalingError as exc:
        return exc.code
    return None


def test_media_sections_read_kinds_mids_and_codec_order():
    sections = media_sections(HEAD + AUDIO.format(mid="0") + VIDEO.format(mid="1"))
    assert [(s.kind, s.mid, s.codecs) for s in sections] == [("audio", "0", ("opus", "pcmu")), ("video", "1", ("vp8",))]


@pytest.mark.parametrize("body, code", [
    (AUDIO.format(mid="0"), None),
    (AUDIO.format(mid="0") + AUDIO.format(mid="1"), "unsupported_media"),
    (AUDIO.format(mid="0") + VIDEO.format(mid="1"), "unsupported_media"),
    (AUDIO.format(mid="0") + DATA.format(mid="1"), "unsupported_media"),
    ("".join(AUDIO.format(mid=str(i)) for i in range(40)) + VIDEO.format(mid="40"), "unsupported_media"),
    (VIDEO.format(mid="0"), "no_audio"),
    ("m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n", "unsupported_codec"),  # G.711 only
    ("m=audio 9 UDP/TLS/RTP/SAVPF 0 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n", "unsupported_codec"),  # Opus not first
])
def test_first_offer_is_one_audio_line_with_opus(body, code):
    assert _code(HEAD + body) == code


def test_a_reoffer_must_keep_the_negotiated_mids():
    two = HEAD + AUDIO.format(mid="0") + AUDIO.format(mid="1")
    assert _code(two, ["0", "1"]) is None
    assert _code(two + AUDIO.format(mid="2"), ["0", "1"]) == "unsupported_media"  # adds a mid
    assert _code(two + VIDEO.format(mid="2"), ["0", "1"]) == "unsupported_media"
    assert _code(HEAD + AUDIO.format(mid="0"), ["0", "1"]) == "unsupported_media"  # drops one
    assert _code(HEAD + AUDIO.format(mid="1") + AUDIO.format(mid="0"), ["0", "1"]) == "unsupported_media"  # reorders


@pytest.mark.parametrize("host, port, ok", [
    ("127.0.0.1", 5000, True), ("192.168.1.20", 40000, True), ("2001:db8::1", 3478, True), ("abc-123.local", 9, True),
    ("0.0.0.0", 5000, False), ("::", 5000, False), ("224.0.0.251", 5353, False), ("ff02::1", 9, False),
    ("255.255.255.255", 9, False), ("240.0.0.1", 9, False), ("::ffff:224.0.0.1", 9, False), ("10.0.0.1", 0, False),
    ("example.org", 80, False),
])
def test_candidate_addresses(host, port, ok):
    if ok:
        check_candidate_address(host, port)
    else:
        with pytest.raises(SignalingError) as raised:
            check_candidate_address(host, port)
        assert raised.value.code == "invalid_candidate"


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("parley.example.org", False),
])
def test_loopback_hosts(host, loopback):
    assert is_loopback_host(host) is loopback


def test_dev_mode_stays_on_loopback_unless_forced():
    assert load_settings(overrides={"auth": {"dev_mode": True}}, environ={}).auth.dev_mode
    with pytest.raises(ConfigError, match="dev-public"):
        load_settings(overrides={"auth": {"dev_mode": True}, "http": {"host": "0.0.0.0"}}, environ={})
    forced = load_settings(overrides={"auth": {"dev_mode": True, "dev_public": True}, "http": {"host": "0.0.0.0"}}, environ={})
    assert forced.http.host == "0.0.0.0"
    assert load_settings(overrides={"http": {"host": "0.0.0.0"}}, environ={}).http.host == "0.0.0.0"  # no dev mode: fine


def test_admin_key_has_a_minimum_length():
    with pytest.raises(ConfigError):
        load_settings(overrides={"auth": {"api_key": "short"}}, environ={})
    assert load_settings(overrides={"auth": {"api_key": "k" * 16}}, environ={}).auth.api_key == "k" * 16


class _FastSource(MediaStreamTrack):
    """20 ms frames as fast as they are asked for, ``count`` of them, then the end."""

    kind = "audio"

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count, self.sent = count, 0

    async def recv(self) -> av.AudioFrame:
        if self.sent >= self.count:
            raise MediaStreamError
        await asyncio.sleep(0)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48_000, self.sent * 960, fractions.Fraction(1, 48_000)
        self.sent += 1
        return frame


async def test_a_listener_that_falls_behind_drops_old_audio_instead_of_piling_it_up():
    source = _FastSource(1000)
    bounded = BoundedAudioTrack(source, max_frames=50)
    while source.sent < source.count:  # the reader is stuck (a slow VAD): nothing reads for 20 s of audio
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.01)
    assert bounded.dropped == 950
    frames = [await bounded.recv() for _ in range(50)]
    assert [f.pts for f in frames] == [i * 960 for i in range(950, 1000)]  # the newest, in order
    with pytest.raises(MediaStreamError):
        await bounded.recv()
    bounded.stop()


async def test_stopping_the_bounded_track_ends_a_waiting_reader():
    class Silent(MediaStreamTrack):
        kind = "audio"

        async def recv(self):  # never delivers
            await asyncio.Event().wait()

    bounded = BoundedAudioTrack(Silent())
    reader = asyncio.create_task(bounded.recv())
    await asyncio.sleep(0.01)
    bounded.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(reader, 1)


async def test_closing_while_decisions_are_in_flight_leaves_no_task_and_starts_no_turn(settings):
    """Two utterances: the second's decision waits for the first's, which is transcribing. The room ends
    (close) meanwhile; when the transcription would have come back, nothing may start a turn."""
    gate = asyncio.Event()
    transcribing: list[int] = []
    asked_llm: list[object] = []

    async def transcribe(samples, language=None, hotwords=None):
        transcribing.append(samples.size)
        await gate.wait()
        return "What is the capital of France?"

    async def stream(messages):
        asked_llm.append(messages)
        yield "Paris."

    models = SimpleNamespace(
        tts=SimpleNamespace(sample_rate=24_000, synthesize=lambda text: np.zeros(2400, np.float32)),
        transcribe=transcribe, llm=SimpleNamespace(stream=stream), executor=None, early_stt=EarlyTranscriptionStats(),
        speculation=SpeculationStats(),
    )
    emitted: list[object] = []
    playout = PlayoutTrack()
    session = AgentSession(models, settings, playout, emitted.append, "agent-test")  # type: ignore[arg-type]
    speaker = Speaker("p1", "Ada")
    before = len(asyncio.all_tasks())
    for _ in range(2):
        session._on_endpoint_event(Utterance(np.zeros(16_000, np.float32), 0.0, 0.0, speech_ms=900), speaker)
    await asyncio.sleep(0.05)
    assert len(transcribing) == 1  # the first is transcribing, the second waits for it
    await session.close()
    gate.set()  # a transcription that would have come back now
    await asyncio.sleep(0.2)
    assert len(asyncio.all_tasks()) <= before, [t.get_name() for t in asyncio.all_tasks()]
    assert session._turn is None and not asked_llm and len(transcribing) == 1
    assert not [e for e in emitted if isinstance(e, StateChanged) and e.state == "thinking"]
    playout.stop()


async def test_the_agent_stops_decoding_a_caller_once_its_listener_dies(settings):
    """A listener that fails (a VAD error, here any exception) must not leave the caller's audio decoded for nobody."""
    from parley.server.room import RoomAgent
    from parley.server.rooms import RoomRegistry
    from parley.signaling import api_models as api

    class Broken(MediaStreamTrack):
        kind = "audio"

        async def recv(self):
            raise RuntimeError("the VAD exploded")

    room = await RoomRegistry(settings, None).create(api.RoomCreate(id="listener-dies"))
    agent = RoomAgent(room, None, None)
    caller = SimpleNamespace(participant_id="p1", name="Ada", tap=SimpleNamespace(decode=False))
    agent.listen_to(caller, Broken())  # type: ignore[arg-type]
    assert caller.tap.decode is True
    for _ in range(100):
        if not caller.tap.decode:
            break
        await asyncio.sleep(0.01)
    assert caller.tap.decode is False
    await agent.close()
