"""Server-side echo cancellation (WebRTC AEC3 via the livekit wheel) on real speech, offline: the
agent's voice coming back delayed, filtered, attenuated and with room noise is removed, while the
caller's own speech over it gets through."""

from __future__ import annotations

import time

import numpy as np
import pytest

from parley.agents.echo_cancel import BLOCK, EchoCanceller
from parley.core.audio import AGENT_RATE, resample
from tests.support.audio import peak_correlation, read_wav, speak_to_wav


def speakerphone(far: np.ndarray, delay_ms: float, gain_db: float, rng: np.random.Generator) -> np.ndarray:
    """``far`` as a microphone hears it from a loudspeaker: delayed, low-passed, a reflection, noise."""
    delay = int(delay_ms * AGENT_RATE / 1000)
    echo = np.zeros_like(far)
    echo[delay:] = far[: far.size - delay]
    smoothed = np.convolve(echo, np.ones(4) / 4, mode="same")  # a loudspeaker's lost highs
    reflection = np.zeros_like(far)
    reflection[400:] = smoothed[:-400] * 0.3  # a wall 25 ms further away
    noise = rng.standard_normal(far.size).astype(np.float32) * 10 ** (-55 / 20)
    return ((smoothed + reflection) * 10 ** (gain_db / 20) + noise).astype(np.float32)


def run(canceller: EchoCanceller, far: np.ndarray, mic: np.ndarray) -> np.ndarray:
    """Render and capture 20 ms at a time, as the server does (reference as sent, capture as received)."""
    out = []
    step = 2 * BLOCK
    for start in range(0, far.size - step + 1, step):
        canceller.render(far[start : start + step])
        out.append(canceller.capture(mic[start : start + step]))
    return np.concatenate(out)


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    folder = tmp_path_factory.mktemp("aec")
    agent = read_wav(speak_to_wav("Paris is the capital of France, and it is known for the Eiffel Tower and "
                                  "its museums, which attract millions of visitors every year.", folder / "a.wav"))
    caller = read_wav(speak_to_wav("Wait, stop, I have another question.", folder / "c.wav", voice="en-gb"))
    return resample(agent[0], agent[1], AGENT_RATE), resample(caller[0], caller[1], AGENT_RATE)


def level_db(x: np.ndarray) -> float:
    return 10 * float(np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


@pytest.mark.parametrize("delay_ms,gain_db", [(40, -6), (150, -12), (250, -20)])
def test_the_agents_voice_coming_back_is_removed(speech, delay_ms, gain_db):
    agent, _ = speech
    far = np.concatenate([agent, agent])  # AEC3 converges within the first sentence
    mic = speakerphone(far, delay_ms, gain_db, np.random.default_rng(1))
    out = run(EchoCanceller(), far, mic)
    second = slice(agent.size + AGENT_RATE // 2, out.size)  # after convergence
    erle = level_db(mic[second]) - level_db(out[second])
    print(f"delay {delay_ms} ms, echo {gain_db} dB: ERLE {erle:.1f} dB")
    assert erle > 25, erle  # the echo is at least 25 dB quieter: far below what the VAD calls speech


def test_the_callers_own_speech_over_the_echo_gets_through(speech):
    agent, caller = speech
    far = np.concatenate([agent, agent])
    rng = np.random.default_rng(2)
    mic = speakerphone(far, 120, -10, rng)
    at = agent.size + AGENT_RATE // 2  # the caller cuts in during the second sentence (double talk)
    near = np.zeros_like(far)
    near[at : at + caller.size] = caller[: far.size - at] * 0.5
    out = run(EchoCanceller(), far, mic + near)
    span = slice(at, min(at + caller.size, out.size))
    kept = level_db(out[span]) - level_db(near[span])
    correlation = peak_correlation(near[span], out[at - 800 : span.stop + 800])  # the high-pass filter shifts phase
    print(f"double talk: the caller's speech kept at {kept:.1f} dB, correlation {correlation:.2f}")
    assert kept > -6 and correlation > 0.6, (kept, correlation)  # unrelated speech stays below 0.2


def test_a_microphone_without_echo_is_left_alone(speech):
    """A headset (or a device that cancels its own echo): once the agent has talked a while and nothing
    of it comes back, the caller's words over the agent's pass untouched — AEC3 with no echo path to
    learn would still damp them by 10–30 dB."""
    agent, caller = speech
    far = np.concatenate([agent, agent])
    at = agent.size + AGENT_RATE // 2
    near = np.zeros_like(far)
    near[at : at + caller.size] = caller[: far.size - at] * 0.5
    mic = near + np.random.default_rng(3).standard_normal(far.size).astype(np.float32) * 10 ** (-60 / 20)
    canceller = EchoCanceller()
    assert canceller.learning  # undecided: an onset over the agent may be its echo
    out = run(canceller, far, mic)
    assert canceller.detector.echo is False, canceller.detector.likeness
    assert not canceller.learning  # no echo here: nothing to learn, barge-in as fast as without a canceller
    span = slice(at, min(at + caller.size, out.size))
    assert abs(level_db(out[span]) - level_db(mic[span])) < 0.5


def test_a_speakerphone_is_recognised_as_one(speech):
    agent, _ = speech
    far = np.concatenate([agent, agent])
    canceller = EchoCanceller()
    run(canceller, far[: AGENT_RATE], speakerphone(far, 150, -12, np.random.default_rng(4))[: AGENT_RATE])
    assert canceller.learning  # 1 s of the agent's voice: AEC3 may not know the echo path yet
    run(canceller, far[AGENT_RATE:], speakerphone(far, 150, -12, np.random.default_rng(4))[AGENT_RATE:])
    assert canceller.detector.echo is True, canceller.detector.likeness
    assert not canceller.learning, far.size / AGENT_RATE  # several seconds of it: learned


@pytest.mark.parametrize("aligned", [True, False])
def test_a_listener_running_behind_still_has_its_echo_removed(speech, aligned):
    """The reference goes to the canceller as it is sent; the caller's audio of the same moment is read
    1 s later (a loaded host's listener). By arrival time the two line up and the echo is removed; by the
    time they are read (``aligned=False``, how it was done before) the echo looks 1 s late, beyond what
    AEC3 and the detector look for, and stays."""
    agent, _ = speech
    far = np.concatenate([agent, agent])
    mic = speakerphone(far, 60, -6, np.random.default_rng(3))
    canceller, out, step, lag = EchoCanceller(), [], 2 * BLOCK, 50  # 50 frames of 20 ms behind
    clock = time.monotonic()  # (the frames' times run ahead of it: this loop is faster than real time)
    for frame, start in enumerate(range(0, far.size - step + 1, step)):
        canceller.render(far[start : start + step], sent_at=clock + frame * 0.02 if aligned else None)
        if frame >= lag:
            read = start - lag * step
            out.append(canceller.capture(mic[read : read + step], clock + (frame - lag) * 0.02 if aligned else None))
    out = np.concatenate(out)
    second = slice(agent.size + AGENT_RATE // 2, out.size)
    erle = level_db(mic[second]) - level_db(out[second])
    print(f"listener 1 s behind, {'aligned by arrival' if aligned else 'as read'}: ERLE {erle:.1f} dB")
    assert (erle > 25) if aligned else (erle < 10), erle
