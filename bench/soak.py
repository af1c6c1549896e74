"""``make soak``: N callers ask questions in a loop for M minutes; late frames, errors and RSS over time,
per process (Parley and its LLM child), with the growth after the first 10 minutes.

    python -m parley.bench.soak --calls 2 --minutes 10 [--llm-model smollm2-135m]
    python -m parley.bench.soak --long      # 1 call × 60 min, then 2 calls × 30 min (make soak-long)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from parley.signaling.client import ParleyClient, TurnResult
from parley.bench.questions import load_questions
from parley.bench.scenarios import _ask
from parley.bench.server_process import ServerProcess, rss_by_process, rss_bytes
from parley.bench.stats import summary
from parley.core import aiortc_hooks

log = logging.getLogger("parley.soak")


async def _caller(url: str, questions: list, index: int, deadline: float, errors: list[dict]) -> list[TurnResult]:
    caller = ParleyClient(url, room=f"soak-{index}")
    results: list[TurnResult] = []
    await caller.start()
    try:
        i = index * 7
        while time.monotonic() < deadline:
            results.append(await _ask(caller, questions[i % len(questions)], 60))
            i += 1
    finally:
        errors += caller.of_type("error")
        await caller.close()
    return results


async def soak(calls: int, minutes: float, env: dict[str, str], results_dir: Path) -> dict[str, Any]:
    aiortc_hooks.install(aiortc_hooks.HookSettings(host_addresses=("127.0.0.1",)))
    questions = load_questions(Path("bench/questions"), 24)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    async with ServerProcess(env, results_dir / "logs" / f"soak-{stamp}.log") as server:
        assert server.pid is not None
        rss_start = rss_bytes(server.pid)
        deadline = time.monotonic() + minutes * 60
        errors: list[dict] = []
        tasks = [asyncio.create_task(_caller(server.url, questions, i, deadline, errors)) for i in range(calls)]
        samples = []
        async with aiohttp.ClientSession() as http:
            while not all(t.done() for t in tasks):
                async with http.get(f"{server.url}/stats") as response:
                    playout = (await response.json())["playout"]
                samples.append({
                    "t": round(time.monotonic() - deadline + minutes * 60), "rss_mb": rss_bytes(server.pid) / 2**20,
                    "rss_by_process_mb": rss_by_process(server.pid), **playout,
                })
                await asyncio.wait(tasks, timeout=10)
        turns = [r for t in tasks for r in t.result()]
        last = samples[-1] if samples else {}
    report = {
        "started_at": stamp, "calls": calls, "minutes": minutes, "turns": len(turns),
        "answered": sum(r.answered for r in turns),
        "voice_to_voice_s": summary(r.voice_to_voice_s for r in turns if r.answered),
        "errors": [{"code": e.get("code"), "message": e.get("message")} for e in errors],
        "frames_sent": last.get("frames_sent"), "late_frames": last.get("late_frames"), "resyncs": last.get("resyncs"),
        "rss_start_mb": rss_start / 2**20, "rss_end_mb": last.get("rss_mb"),
        "rss_max_mb": max((s["rss_mb"] for s in samples), default=None),
        "rss_per_process": memory_profile(samples), "samples": samples,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"soak-{stamp}.json").write_text(json.dumps(report, indent=1))
    return report


WARM_UP_S = 600  # growth is measured after the first 10 minutes (caches, allocator warm-up)


def memory_profile(samples: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per process: RSS at start, middle and end, and the growth from minute 10 (or the first sample) to the end."""
    if not samples:
        return {}
    roles = sorted({role for s in samples for role in s.get("rss_by_process_mb", {})})
    settled = next((s for s in samples if s["t"] >= WARM_UP_S), samples[0])
    out: dict[str, dict[str, float | None]] = {}
    for role in roles:
        def at(sample: dict[str, Any]) -> float | None:
            return sample.get("rss_by_process_mb", {}).get(role)

        start, middle, end, base = at(samples[0]), at(samples[len(samples) // 2]), at(samples[-1]), at(settled)
        growth = None if not base or end is None else round(100 * (end - base) / base, 1)
        out[role] = {"start_mb": start, "middle_mb": middle, "end_mb": end, f"from_t{settled['t']}_mb": base, "growth_pct": growth}
    return out


def _print(report: dict[str, Any]) -> None:
    v = report["voice_to_voice_s"]
    print(f"soak: {report['calls']} calls × {report['minutes']} min: {report['answered']}/{report['turns']} answered, "
          f"p50 {v['p50'] or float('nan'):.2f} s p95 {v['p95'] or float('nan'):.2f} s; errors {len(report['errors'])}; frames sent {report['frames_sent']}, "
          f"late {report['late_frames']}, resyncs {report['resyncs']}; RSS {report['rss_start_mb']:.0f} → "
          f"{report['rss_end_mb']:.0f} MB (max {report['rss_max_mb']:.0f})")
    for role, figures in report["rss_per_process"].items():
        print(f"  {role:>11}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="parley-soak", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--llm-model", help="LLM for the server (default: Parley's default)")
    parser.add_argument("--results", type=Path, default=Path("bench/results"))
    parser.add_argument("--long", action="store_true", help="1 call × 60 min, then 2 calls × 30 min (overrides --calls/--minutes)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    runs = [(1, 60.0), (2, 30.0)] if args.long else [(args.calls, args.minutes)]
    ok = True
    for calls, minutes in runs:
        # As many agent rooms as callers (admission control would turn the second away on 2 cores).
        env = {"PARLEY_HTTP__MAX_CALLS": "64", "PARLEY_AGENT__CAPACITY": str(max(1, calls))}
        env |= {"PARLEY_LLM__MODEL": args.llm_model} if args.llm_model else {}
        report = asyncio.run(soak(calls, minutes, env, args.results))
        _print(report)
        ok = ok and bool(report["turns"]) and not report["errors"]
    return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main())
