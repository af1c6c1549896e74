import time

import numpy as np
import pytest

from parley.core.audio import FrameToAgentPcm, Resampler, dbfs, join_speech, resample
from parley.server.playout import PlayoutBuffer, PlayoutTrack


def tone(freq: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(("src", "dst"), [(24_000, 48_000), (48_000, 16_000), (22_050, 48_000), (16_000, 16_000)])
def test_resample_keeps_duration_and_pitch(src, dst):
    out = resample(tone(440, 1.5, src), src, dst)
    assert abs(out.size - 1.5 * dst) <= dst * 0.005
    spectrum = np.abs(np.fft.rfft(out))
    peak_hz = np.argmax(spectrum) * dst / out.size
    assert abs(peak_hz - 440) < 5


def test_streaming_resampler_matches_whole_clip_length():
    clip = tone(300, 1.0, 24_000)
    stream = Resampler(24_000, 48_000)
    parts = [stream.process(clip[i : i + 480]) for i in range(0, clip.size, 480)] + [stream.flush()]
    assert abs(sum(p.size for p in parts) - 48_000) <= 48


def test_webrtc_frames_become_16k_mono():
    import av

    converter = FrameToAgentPcm()
    total = 0
    for i in range(50):  # 1 s of 48 kHz stereo s16, the layout aiortc decodes to
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1920), np.int16), format="s16", layout="stereo")
        frame.sample_rate = 48_000
        frame.pts = i * 960
        total += converter.convert(frame).size
    assert abs(total - 16_000) <= 160


def test_dbfs():
    assert dbfs(np.zeros(100, np.float32)) == -120.0
    assert -4 < dbfs(np.ones(100, np.float32) * 0.7) < -2


async def test_playout_buffer_positions_and_waiters():
    buffer = PlayoutBuffer()
    end = buffer.push(np.ones(1500, np.float32) * 0.5)
    assert end == 1500 and buffer.buffered == 1500
    done = buffer.wait_played(end)
    first, real = buffer.pop(960)
    assert real == 960 and first[0] > 0 and not done.done()
    second, real = buffer.pop(960)
    assert real == 540 and (second[540:] == 0).all()
    assert done.done()


async def test_playout_flush_drops_audio_and_releases_waiters():
    buffer = PlayoutBuffer()
    waiter = buffer.wait_played(buffer.push(np.ones(48_000, np.float32)))
    assert buffer.flush() == 48_000
    assert waiter.done() and buffer.buffered == 0
    silence, real = buffer.pop(960)
    assert real == 0 and not silence.any()


async def test_playout_track_is_paced_at_20ms_and_silent_when_idle():
    track = PlayoutTrack()
    started = time.monotonic()
    frames = [await track.recv() for _ in range(25)]
    elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 0.9  # 24 intervals of 20 ms after the first frame
    assert all(f.samples == 960 and f.sample_rate == 48_000 for f in frames)
    assert all(not f.to_ndarray().any() for f in frames)
    assert [f.pts for f in frames[:3]] == [0, 960, 1920]
    track.push(np.full(960 * 2, 0.25, np.float32))
    loud = [await track.recv() for _ in range(3)]
    assert loud[0].to_ndarray().any() and loud[1].to_ndarray().any() and not loud[2].to_ndarray().any()
    assert track.stats.audio_frames_sent == 2
    track.stop()


def test_two_parts_of_speech_are_joined_with_the_gap_between_their_sounds():
    """The quiet each part brings to the join (0.24 s after the first, 0.3 s before the second) is cut to
    50 ms, so the speech is 0.3 s apart, not 0.3 s plus both edges; quiet elsewhere is left as it was."""
    rate = 16_000
    quiet = lambda seconds: np.full(int(seconds * rate), 1e-3, np.float32)  # noqa: E731
    first = np.concatenate([quiet(0.1), tone(300, 1.0, rate), quiet(0.24)])
    second = np.concatenate([quiet(0.3), tone(300, 0.8, rate), quiet(0.2)])
    joined = join_speech(first, second, rate, gap_s=0.3)
    loud = np.flatnonzero(np.abs(joined) > 0.05)
    assert abs(np.diff(loud).max() / rate - 0.3) < 0.02  # the longest stretch without sound, between the parts
    assert loud[0] == pytest.approx(0.1 * rate, abs=20) and joined.size - loud[-1] == pytest.approx(0.2 * rate, abs=20)
    # Silence throughout (nothing to find) is joined as it is, with the whole gap between.
    assert join_speech(np.zeros(800, np.float32), np.zeros(600, np.float32), rate).size == 800 + 4_800 + 600
