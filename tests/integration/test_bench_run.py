"""`parley bench` end to end, tiny: it starts its servers, measures, writes JSON + PNG, and cleans up."""

import json
from pathlib import Path
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def _parley_servers() -> set[str]:
    out = subprocess.run(["pgrep", "-f", "parley.server.(cli serve|worker)"], capture_output=True, text=True).stdout
    return set(out.split())


def _pipecat_bots() -> set[str]:
    out = subprocess.run(["pgrep", "-f", "pipecat_peer/bot.py"], capture_output=True, text=True).stdout
    return set(out.split())


@pytest.mark.timeout(900)  # eight servers in turn, each loading its models, on 2 cores
def test_bench_runs_and_cleans_up(tmp_path):
    before, bots_before = _parley_servers(), _pipecat_bots()
    result = subprocess.run(
        [sys.executable, "-m", "parley.server.cli", "bench", "--llm-model", "smollm2-135m", "--questions", "2",
         "--ramp", "1", "--step-seconds", "4", "--mandarin", "1", "--mandarin-paused", "1", "--forwarding", "2", "--forwarding-seconds", "3", "--stt-batching", "1,3", "--paused", "1",
         "--cluster-workers", "1,2", "--cluster-people", "2", "--browser", "1", "--no-monologue",
         "--speakerphone", "1", "--speakerphone-baseline", "1", "--speakerphone-window", "20", "--speakerphone-barge-ins", "1", "--results", str(tmp_path), "--questions-dir", str(tmp_path / "q")],
        capture_output=True, text=True, timeout=840,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Voice-to-voice latency" in result.stdout and "naive ÷ streaming" in result.stdout
    [report] = list(tmp_path.glob("*.json"))
    run = json.loads(report.read_text())
    # Each configuration asks both questions; with SmolLM2 + hibari a turn can fail now and then (hibari
    # raised IndexError on a reply in CI, not reproduced here), which is not what this test is about.
    assert run["single_call"]["streaming"]["questions"] == 2 and run["single_call"]["streaming"]["answered"] >= 1
    assert run["single_call"]["naive"]["questions"] == 2
    assert run["single_call"]["sequential"]["questions"] == 2 and run["single_call"]["sequential"]["answered"] >= 1
    assert run["sequential_ratio_p50"] > 0  # the pipeline before overlap
    realtime = run["single_call"]["realtime_ws"]  # the same questions over /v1/realtime (the openai SDK)
    assert realtime["questions"] == 2 and realtime["answered"] >= 1 and realtime["voice_to_voice_s"]["p50"] > 0, realtime
    assert "sequential ÷ streaming" in result.stdout and "Questions with a pause inside" in result.stdout
    assert run["paused"]["streaming"]["questions"] == run["paused"]["sequential"]["questions"] == 1
    assert run["early_stt"]["streaming"]["started"] >= 2 and run["early_stt"]["sequential"]["started"] == 0
    assert run["transport_floor"]["round_trip_s"]["n"] >= 10
    assert run["baseline_ratio_p50"] > 0
    # Pipecat on the same models, the same caller and questions (its own virtualenv; see test_pipecat_peer.py)
    assert run["single_call"]["pipecat"]["answered"] == 2 and run["pipecat_ratio_p50"] > 0
    assert run["paused"]["pipecat"]["questions"] == 1 and "pipecat ÷ streaming" in result.stdout
    assert run["single_call"]["streaming"]["cpu_cores_busy"] > 0 and run["single_call"]["pipecat"]["cpu_cores_busy"] > 0
    assert [s["calls"] for s in run["ramp"]["streaming"]] == [1]
    assert run["single_call"]["mandarin"]["questions"] == 1  # the Mandarin configuration (zh server, Kokoro questions)
    assert run["paused"]["mandarin"]["questions"] == 1  # ... and a Mandarin question with a pause inside, on it
    # Admission control (capacity 1): the call in progress is answered while a second agent call is refused.
    admission = run["admission"]
    # (one question each phase with SmolLM2 + hibari: a reply hibari cannot read — IndexError, seen once in
    # CI — fails that turn with tts_failed, which is not what this checks)
    assert admission["alone"]["questions"] == admission["while_refusing"]["questions"] == 1, admission
    assert admission["alone"]["answered"] + admission["while_refusing"]["answered"] >= 1, admission
    assert admission["join_attempts"].get("busy", 0) >= 1 and not admission["join_attempts"].get("admitted"), admission
    assert "Admission control" in result.stdout
    [step] = run["forwarding"]["steps"]
    assert step["forwarded_streams"] == 2 and step["frames_per_stream_per_s"] > 40, step
    assert step["cpu_per_stream_percent"] >= 0 and run["forwarding"]["codec"]["encode_ms_per_frame"] > 0
    assert "SFU forwarding" in result.stdout
    cluster = run["cluster"]  # 1 worker beside 2 (`parley serve --workers 2`, a private redis-server)
    for count in ("1", "2"):
        [step] = cluster["forwarding"][count]["steps"]
        assert step["forwarded_streams"] == 2 and step["frames_per_stream_per_s"] > 40, (count, step)
    assert cluster["join_s"]["owner"]["n"] == cluster["join_s"]["other"]["n"] == 10, cluster["join_s"]
    assert cluster["join_s"]["other"]["p50"] > 0 and "Workers (`parley serve --workers N`" in result.stdout
    phone = run["speakerphone"]  # the same echo levels without and with the server's echo cancellation
    assert [level["replies"] for level in phone["off"]["levels"]] == [1, 1, 1]
    assert [level["replies"] for level in phone["on"]["levels"]] == [1, 1, 1]
    assert phone["on"]["echo_cancellation"]["far_blocks"] > 0 and phone["off"]["echo_cancellation"] is None
    assert phone["barge_in"]["tries"] == 1 and "Speakerphone" in result.stdout
    rows = {(r["utterances"], r["mode"]): r for r in run["stt_batching"]["rows"]}
    assert rows[(3, "one by one")]["model_passes"] == 3 and rows[(3, "batched")]["model_passes"] == 1
    assert all(r["utterances_per_s"] > 0 for r in rows.values()) and "STT batching" in result.stdout
    step = run["ramp"]["streaming"][0]
    assert step["stt_passes"] <= step["stt_utterances"] and step["stt_utterances"] > 0  # the server's own counters
    # The bundled page in headless chromium (a fresh server): the question found in the microphone's signal and answered.
    browser = run["browser"]
    assert browser["questions"] == browser["heard_questions"] == 1 and browser["answered"] == 1, browser
    assert browser["voice_to_voice_s"]["p50"] > 0 and "Heard in a real browser" in result.stdout
    assert list(tmp_path.glob("*.png"))
    assert _parley_servers() == before  # every server the bench started is gone
    # ...and so is its Pipecat bot (a bot left by an earlier, killed run is not this run's to answer for)
    leftover = _pipecat_bots() - bots_before
    assert not leftover, [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in leftover if Path(f"/proc/{pid}").exists()]
