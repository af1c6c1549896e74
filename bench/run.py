"""``parley bench``: start Parley (or use ``--url``), call it with real aiortc clients, report what callers hear."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import platform
import sys
from pathlib import Path
from typing import Any

from parley.bench import report
from parley.bench.questions import load_questions
from parley.bench.forwarding import forwarding_ramp
from parley.bench.scenarios import RampLimits, capacity_ramp, single_call_turns, transport_floor
from parley.bench.server_process import ServerProcess
from parley.bench.stt_batching import stt_batching_bench
from parley.server.config import load_settings
from parley.server.ice import fix_consent_after_close, use_host_addresses
from parley.server.logs import setup_logging

log = logging.getLogger("parley.bench")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="parley bench",
        description="Measure voice-to-voice latency and capacity with real WebRTC callers on loopback, "
        "against a naive baseline and the transport floor, in one run.",
    )
    p.add_argument("--url", help="measure a Parley already running here (loopback) instead of starting one")
    p.add_argument(
        "--profile", choices=["cpu", "gpu"], default="cpu",
        help="cpu: embedded models (default); gpu: faster-whisper on CUDA, vLLM at --llm-url, Fish Speech at --tts-url",
    )
    p.add_argument("--llm-model", help="LLM for the servers the bench starts (default: the profile's)")
    p.add_argument("--llm-url", help="OpenAI-compatible LLM URL (gpu profile default: http://127.0.0.1:8000/v1)")
    p.add_argument("--tts-url", help="Fish Speech API server (gpu profile default: http://127.0.0.1:8081)")
    p.add_argument("--stt-model", help="Whisper model for the servers the bench starts")
    p.add_argument("--questions", type=int, default=24, help="how many of the 24 spoken questions to ask per configuration")
    p.add_argument("--ramp", default="1,2,4,8,16", help="concurrent-call steps (stops at the first failing step)")
    p.add_argument("--step-seconds", type=float, default=30.0, help="duration of each ramp step")
    p.add_argument("--max-p95", type=float, default=3.0, help="a ramp step fails above this p95 voice-to-voice (s)")
    p.add_argument("--no-baseline", action="store_true", help="skip the naive baseline configuration")
    p.add_argument("--no-ramp", action="store_true", help="skip the capacity ramps")
    p.add_argument("--forwarding", default="2,4,8,16", help="people per step of the SFU forwarding ramp (no agent)")
    p.add_argument("--forwarding-room-size", type=int, default=2, help="people per room in the forwarding ramp")
    p.add_argument("--forwarding-seconds", type=float, default=10.0, help="measuring window of each forwarding step")
    p.add_argument("--no-forwarding", action="store_true", help="skip the SFU forwarding ramp")
    p.add_argument("--stt-batching", default="1,2,4,8", help="utterance counts for the STT batching comparison")
    p.add_argument("--no-stt-batching", action="store_true", help="skip the STT batching comparison")
    p.add_argument("--forwarding-only", action="store_true", help="run only the SFU forwarding ramp")
    p.add_argument("--results", type=Path, default=Path("bench/results"), help="where JSON and PNG go")
    p.add_argument("--questions-dir", type=Path, default=Path("bench/questions"), help="cache of the spoken questions")
    return p


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    except OSError:
        mem = 0.0
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.system()} {platform.release()}"


BENCH_API_KEY = "bench-admin-key"


def _model_env(args: argparse.Namespace) -> dict[str, str]:
    """The profile and model choices, as the environment of a Parley process (the bench's servers, or this one)."""
    env = {"PARLEY_PROFILE": args.profile}
    if args.llm_model:
        env["PARLEY_LLM__MODEL"] = args.llm_model
    if args.stt_model:
        env["PARLEY_STT__MODEL"] = args.stt_model
    if args.llm_url:
        env.update({"PARLEY_LLM__BACKEND": "openai", "PARLEY_LLM__URL": args.llm_url})
    if args.tts_url:
        env["PARLEY_TTS__URL"] = args.tts_url
    return env


def _server_env(args: argparse.Namespace, pipeline: str, mode: str = "voice") -> dict[str, str]:
    return {"PARLEY_AGENT__PIPELINE": pipeline, "PARLEY_AGENT__MODE": mode, "PARLEY_HTTP__MAX_CALLS": "64", **_model_env(args)}


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    use_host_addresses(["127.0.0.1"])  # our callers offer loopback candidates only
    fix_consent_after_close()
    started = dt.datetime.now(dt.timezone.utc)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    questions = load_questions(args.questions_dir, args.questions)
    steps = [int(x) for x in args.ramp.split(",") if x.strip()]
    limits = RampLimits(p95_s=args.max_p95)
    logs = args.results / "logs" / stamp
    run: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"), "machine": _machine(), "profile": args.profile,
        "models": args.llm_url or args.llm_model or "defaults (Whisper tiny.en, Qwen2.5-1.5B Q4_K_M, hibari)",
        "limits": {"p95_s": limits.p95_s, "late_frame_ratio": limits.late_frame_ratio},
        "single_call": {}, "ramp": {}, "max_calls_sustained": {}, "not_measured": [],
    }

    async def measure(name: str, url: str, pid: int | None) -> None:
        log.info("%s: %d questions on one call", name, len(questions))
        run["single_call"][name] = await single_call_turns(url, questions)
        if not args.no_ramp:
            ramp = await capacity_ramp(url, questions, steps, args.step_seconds, pid, limits)
            run["ramp"][name] = [vars(s) for s in ramp]
            run["max_calls_sustained"][name] = max((s.calls for s in ramp if s.sustained), default=0)

    if not (args.no_stt_batching or args.forwarding_only):
        settings = load_settings(environ={**os.environ, **_model_env(args)})
        sizes = [int(x) for x in args.stt_batching.split(",") if x.strip()]
        log.info("STT batching: %s utterances at once, one by one and batched (%s on %s)", sizes, settings.stt.model, settings.stt.device)
        run["stt_batching"] = await stt_batching_bench(settings, questions, sizes)
    if args.forwarding_only or not (args.no_forwarding or args.url):
        log.info("SFU forwarding: starting a server without models (rooms without an agent)")
        env = {**_server_env(args, "streaming", "echo"), "PARLEY_AUTH__API_KEY": BENCH_API_KEY}
        async with ServerProcess(env, logs / "forwarding.log") as server:
            people = [int(x) for x in args.forwarding.split(",") if x.strip()]
            run["forwarding"] = await forwarding_ramp(
                server.url, BENCH_API_KEY, server.pid, questions[0].samples, people, room_size=args.forwarding_room_size,
                seconds=args.forwarding_seconds,
            )
    elif args.url:
        run["not_measured"].append("SFU forwarding (the bench did not start the server: --url)")
    if args.forwarding_only:
        pass
    elif args.url:
        await measure("streaming", args.url, None)
        run["not_measured"] += ["transport floor and naive baseline (the bench did not start the server: --url)"]
    else:
        log.info("transport floor: starting an echo server")
        async with ServerProcess(_server_env(args, "streaming", "echo"), logs / "echo.log") as echo:
            run["transport_floor"] = await transport_floor(echo.url)
        log.info("starting Parley (streaming pipeline)")
        async with ServerProcess(_server_env(args, "streaming"), logs / "streaming.log") as server:
            await measure("streaming", server.url, server.pid)
        if not args.no_baseline:
            log.info("starting Parley with the naive baseline pipeline")
            async with ServerProcess(_server_env(args, "naive"), logs / "naive.log") as server:
                await measure("naive", server.url, server.pid)
    base, ours = run["single_call"].get("naive"), run["single_call"].get("streaming")
    if base and ours and base["voice_to_voice_s"]["p50"] and ours["voice_to_voice_s"]["p50"]:
        run["baseline_ratio_p50"] = base["voice_to_voice_s"]["p50"] / ours["voice_to_voice_s"]["p50"]
    run["json"] = str(args.results / f"{stamp}.json")
    run["png"] = str(args.results / f"{stamp}.png")
    return run


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(os.environ.get("PARLEY_LOG_LEVEL", "INFO"))
    run = asyncio.run(_run(args))
    report.write_json(run, Path(run["json"]))
    if not report.write_plot(run, Path(run["png"])):
        run["png"] = None
    print(report.markdown(run))
    print(f"\nJSON: {run['json']}" + (f"\nPlot: {run['png']}" if run["png"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
