"""Rooms with real aiortc clients: forwarded audio, the agent as a participant, isolation, leaving mid-call."""

import asyncio
import contextlib
import time

import numpy as np
import pytest

from parley.signaling.client import ParleyAdmin, ParleyClient
from parley.signaling.state import STATE_KEY
from tests.conftest import TEST_API_KEY
from tests.support.audio import peak_correlation, read_wav, speak_to_wav

pytestmark = pytest.mark.slow
# Opus at aiortc's 96 kb/s keeps the waveform: a forwarded clip correlates with its source at
# 0.9 or more (measured 0.97–0.99 here), while other speech or silence stays below 0.2. 0.6 sits
# well clear of both, so the check fails if the audio is missing, garbled or someone else's.
SAME_AUDIO = 0.6
OTHER_AUDIO = 0.3


async def create_room(url: str, **body) -> dict:
    async with ParleyAdmin(url, TEST_API_KEY) as admin:
        return await admin.create_room(**body)


async def token_for(url: str, room: str, identity: str, name: str) -> str:
    async with ParleyAdmin(url, TEST_API_KEY) as admin:
        return (await admin.token(room, identity, name=name))["token"]


async def join(url: str, room: str, name: str) -> ParleyClient:
    caller = ParleyClient(url, token=await token_for(url, room, name.lower(), name), name=name, keep_audio=True)
    await caller.start()
    return caller


async def until(predicate, timeout: float, what: str) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(what)


def heard(caller: ParleyClient, source: ParleyClient) -> np.ndarray:
    recorder = caller.recorder_for(source.participant_id)
    assert recorder is not None, f"{caller.name} has no m-line for {source.name}: {caller.tracks}"
    return recorder.samples()


@pytest.fixture(scope="module")
def clips(audio_dir):
    def say(name: str, text: str) -> np.ndarray:
        return read_wav(speak_to_wav(text, audio_dir / f"room-{name}.wav"))[0]

    return {
        "alice": say("alice", "Hey Parley, what is the capital of France?"),
        "erin": say("erin", "The weather in the mountains was cold and windy all week."),
    }


async def test_three_people_hear_each_other_and_the_agent_names_the_speaker(parley_app, clips):
    url = parley_app.url
    room1 = await create_room(url, id="family")
    room2 = await create_room(url, id="elsewhere", agent={"enabled": False})
    assert room1["agent"]["enabled"] and not room2["agent"]["enabled"]
    alice, bob, carol = [await join(url, "family", n) for n in ("Alice", "Bob", "Carol")]
    dave, erin = [await join(url, "elsewhere", n) for n in ("Dave", "Erin")]
    everyone = [alice, bob, carol, dave, erin]
    try:
        # Everyone has an m-line for each other person in their room, and none for the other room.
        await until(lambda: all(len(c.tracks) == 3 for c in (alice, bob, carol)) and all(len(c.tracks) == 1 for c in (dave, erin)),
                    15, "renegotiation did not finish")
        await asyncio.sleep(0.5)
        alice.mic.play(clips["alice"])
        erin.mic.play(clips["erin"])
        said = await bob.wait_for(
            lambda m: m["type"] == "transcript" and m["speaker"] == "user" and m["final"], 60
        )
        answer = await bob.wait_for(lambda m: m["type"] == "transcript" and m["speaker"] == "agent" and m["final"], 90)
        # The reply has been sent in full; each receiver decodes it on this process's (busy) loop.
        with contextlib.suppress(TimeoutError):
            await until(lambda: all(c.recorder.first_loud_after(0) is not None for c in (alice, bob, carol)), 10, "")
        await asyncio.sleep(0.5)
        # Bob and Carol got Alice's audio; Dave (other room) got Erin's and nothing of Alice's.
        scores = {
            "bob<-alice": peak_correlation(clips["alice"], heard(bob, alice)),
            "carol<-alice": peak_correlation(clips["alice"], heard(carol, alice)),
            "dave<-erin": peak_correlation(clips["erin"], heard(dave, erin)),
            "dave<-alice (other room)": max(peak_correlation(clips["alice"], r.samples()) for r in dave.mid_recorders.values()),
            "bob<-erin (other room)": max(peak_correlation(clips["erin"], r.samples()) for r in bob.mid_recorders.values()),
        }
        dave_hears = set(dave.tracks.values())
    finally:
        for caller in everyone:
            await caller.close()

    # The agent's transcript names Alice, and every person in the room sees it.
    assert said["participant_id"] == alice.participant_id and said["name"] == "Alice", said
    assert "capital" in said["text"].lower()
    for caller in (alice, carol):
        assert any(m["participant_id"] == alice.participant_id and m["final"] for m in caller.of_type("transcript"))
    # She said its name, so it answered, and it was heard by all three.
    assert answer["text"].strip()
    for caller in (alice, bob, carol):
        assert caller.recorder.first_loud_after(0) is not None, f"{caller.name} never heard the agent"
    room = parley_app.app[STATE_KEY].rooms.rooms.get("family")
    assert room is None or room.agent is None  # the agent left with the last person

    print("peak correlations:", {k: round(v, 3) for k, v in scores.items()})
    assert scores["bob<-alice"] > SAME_AUDIO and scores["carol<-alice"] > SAME_AUDIO and scores["dave<-erin"] > SAME_AUDIO
    assert scores["dave<-alice (other room)"] < OTHER_AUDIO and scores["bob<-erin (other room)"] < OTHER_AUDIO
    assert dave_hears == {erin.participant_id}


async def test_someone_leaving_does_not_interrupt_the_others(parley_app, clips):
    url = parley_app.url
    await create_room(url, id="leavers", agent={"enabled": False})
    alice, bob, carol = [await join(url, "leavers", n) for n in ("Alice", "Bob", "Carol")]
    try:
        await until(lambda: all(len(c.tracks) == 2 for c in (alice, bob, carol)), 15, "renegotiation did not finish")
        tone = (0.3 * np.sin(2 * np.pi * 330 * np.arange(48_000 * 6) / 48_000)).astype(np.float32)
        alice.mic.play(tone)
        await asyncio.sleep(2.0)
        offers_before = bob.renegotiations
        left_at = time.monotonic()
        await carol.close()
        await bob.wait_for(lambda m: m["type"] == "participant.left" and m["participant_id"] == carol.participant_id, 10)
        await until(lambda: bob.renegotiations > offers_before, 10, "no renegotiation after the leave")
        await asyncio.sleep(2.5)
        recorder = bob.recorder_for(alice.participant_id)
        bob_hears = set(bob.tracks.values())
    finally:
        for caller in (alice, bob):
            await caller.close()

    assert recorder is not None
    times = np.array(recorder.times)
    window = times[(times > left_at - 1.0) & (times < left_at + 2.0)]
    gaps = np.diff(window)
    print(f"Bob's frames from Alice around Carol's leave: {window.size}, largest gap {gaps.max() * 1000:.0f} ms")
    assert window.size > 100  # 3 s of 20 ms frames, give or take
    assert gaps.max() < 0.200, f"Alice's audio stopped for {gaps.max() * 1000:.0f} ms at Bob when Carol left"
    assert bob_hears == {alice.participant_id}
    assert peak_correlation(tone[: 48_000], recorder.samples()) > SAME_AUDIO
