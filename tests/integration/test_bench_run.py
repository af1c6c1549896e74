"""`parley bench` end to end, tiny: it starts its servers, measures, writes JSON + PNG, and cleans up."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def _parley_servers() -> set[str]:
    out = subprocess.run(["pgrep", "-f", "parley.server.cli serve"], capture_output=True, text=True).stdout
    return set(out.split())


def test_bench_runs_and_cleans_up(tmp_path):
    before = _parley_servers()
    result = subprocess.run(
        [sys.executable, "-m", "parley.server.cli", "bench", "--llm-model", "smollm2-135m", "--questions", "2",
         "--ramp", "1", "--step-seconds", "4", "--forwarding", "2", "--forwarding-seconds", "3", "--stt-batching", "1,3", "--results", str(tmp_path), "--questions-dir", str(tmp_path / "q")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Voice-to-voice latency" in result.stdout and "naive ÷ streaming" in result.stdout
    [report] = list(tmp_path.glob("*.json"))
    run = json.loads(report.read_text())
    assert run["single_call"]["streaming"]["answered"] == 2
    assert run["single_call"]["naive"]["questions"] == 2
    assert run["transport_floor"]["round_trip_s"]["n"] >= 10
    assert run["baseline_ratio_p50"] > 0
    assert [s["calls"] for s in run["ramp"]["streaming"]] == [1]
    [step] = run["forwarding"]["steps"]
    assert step["forwarded_streams"] == 2 and step["frames_per_stream_per_s"] > 40, step
    assert step["cpu_per_stream_percent"] >= 0 and run["forwarding"]["codec"]["encode_ms_per_frame"] > 0
    assert "SFU forwarding" in result.stdout
    rows = {(r["utterances"], r["mode"]): r for r in run["stt_batching"]["rows"]}
    assert rows[(3, "one by one")]["model_passes"] == 3 and rows[(3, "batched")]["model_passes"] == 1
    assert all(r["utterances_per_s"] > 0 for r in rows.values()) and "STT batching" in result.stdout
    step = run["ramp"]["streaming"][0]
    assert step["stt_passes"] <= step["stt_utterances"] and step["stt_utterances"] > 0  # the server's own counters
    assert list(tmp_path.glob("*.png"))
    assert _parley_servers() == before  # every server the bench started is gone
