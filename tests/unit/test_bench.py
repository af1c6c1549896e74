"""The benchmark's own logic: statistics, the caller's microphone timing, questions, and the report."""

import json

import numpy as np
import pytest

from parley.bench import report
from parley.signaling.client import AudioRecorder, QueueMicrophone
from parley.bench.questions import QUESTIONS, load_questions
from parley.bench.stats import percentile, summary


def test_percentiles():
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(range(101), 95) == 95
    s = summary([1.0, None, 3.0])
    assert s["n"] == 2 and s["mean"] == 2.0 and s["min"] == 1.0


async def test_microphone_reports_when_speech_starts_and_ends_leaving():
    mic = QueueMicrophone()
    clip = np.zeros(48_000, np.float32)
    clip[9_600:28_800] = 0.5  # loud from 0.2 s to 0.6 s
    playback = mic.play(clip)
    frames = []
    for _ in range(40):
        frames.append(await mic.recv())
        if playback.ended.done():
            break
    assert playback.started.done() and playback.ended.done()
    # the loud part starts in frame 10 (0-based) and its last sample is in frame 29
    assert len(frames) == 30
    assert frames[9].to_ndarray().max() == 0 and frames[10].to_ndarray().max() > 0
    assert playback.ended.result() - playback.started.result() == pytest.approx(0.38, abs=0.06)
    after = await mic.recv()
    assert after.pts == 30 * 960 and after.to_ndarray().max() == 0  # the clip's silent tail goes on, on time
    mic.stop()


def test_recorder_finds_first_loud_frame_after_a_moment():
    rec = AudioRecorder()
    rec.times, rec.peaks = [1.0, 1.02, 1.04, 1.06], [0.5, 0.0, 0.01, 0.3]
    assert rec.first_loud_after(1.01) == 1.06
    assert rec.first_loud_after(0.5) == 1.0
    assert rec.first_loud_after(2.0) is None


@pytest.mark.slow
def test_questions_are_generated_once_with_their_text(tmp_path):
    questions = load_questions(tmp_path, 3)
    assert [q.text for q in questions] == QUESTIONS[:3]
    assert all(0.8 < q.duration_s < 6 and np.abs(q.samples).max() > 0.1 for q in questions)
    index = json.loads((tmp_path / "questions.json").read_text())
    assert len(index) == len(QUESTIONS) >= 20
    stamp = (tmp_path / "q01.wav").stat().st_mtime_ns
    load_questions(tmp_path, 1)
    assert (tmp_path / "q01.wav").stat().st_mtime_ns == stamp  # cached, not regenerated


def _fake_run() -> dict:
    v2v = {"n": 2, "p50": 1.5, "p95": 1.9, "mean": 1.6, "min": 1.4, "max": 2.0}
    stage = {"n": 2, "p50": 100.0, "p95": 120.0, "mean": 110.0, "min": 90.0, "max": 130.0}
    turns = {"questions": 2, "answered": 2, "voice_to_voice_s": v2v, "stages_ms": {"stt_ms": stage},
             "transport_and_client_ms": stage, "turns": []}
    step = {"calls": 1, "turns": 2, "answered": 2, "voice_to_voice_s": v2v, "frames_sent": 500, "late_frames": 0,
            "resyncs": 0, "cpu_percent": 50.0, "rss_mb": 700.0, "rss_per_call_mb": 30.0, "sustained": True, "reasons": []}
    return {
        "started_at": "2026-01-01T00:00:00+00:00", "machine": "test machine", "profile": "cpu", "models": "m",
        "limits": {"p95_s": 3.0, "late_frame_ratio": 0.01}, "single_call": {"streaming": turns, "mandarin": turns, "naive": turns},
        "baseline_ratio_p50": 1.0, "transport_floor": {"round_trip_s": v2v}, "ramp": {"streaming": [step]},
        "max_calls_sustained": {"streaming": 1}, "not_measured": ["x"],
    }


def test_report_renders_every_section(tmp_path):
    run = _fake_run()
    text = report.markdown(run)
    for needle in ("| streaming | 2/2 | 1500 | 1900 |", "1.00×", "Round trip p50 1500 ms", "100 / 120",
                   "Maximum calls sustained (streaming): **1**", "Not measured in this run: x"):
        assert needle in text, needle
    assert "| mandarin | " in text.split("Per-stage split")[1]  # Mandarin's stages beside English ones
    report.write_json(run, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["profile"] == "cpu"
    assert report.write_plot(run, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_says_what_the_larger_ear_heard_again():
    run = _fake_run()
    early = {"started": 3, "used": 2, "superseded": 1, "settled": 0, "wasted_s": 0.1}
    run["early_stt"] = {"streaming": {**early, "heard_again": 4, "heard_whole_again": 1, "heard_unsure": 2, "unsure_replaced": 1},
                        "naive": early}
    text = report.markdown(run)
    assert ("The larger ear (streaming): 2 transcripts tiny.en was unsure of heard again at once (1 replaced by surer "
            "words); 4 held as cut short heard again in the hold (1 ended it).") in text
    assert "The larger ear (naive)" not in text  # (nothing heard again there: no line)
