"""``parley bench``: start Parley (or use ``--url``), call it with real aiortc clients, report what callers hear."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from parley.bench import report
from parley.bench.browser import browser_turns
from parley.bench.questions import (
    Question, load_barge_in, load_mandarin_paused_questions, load_mandarin_questions, load_monologues, load_paused_questions,
    load_questions,
)
from parley.bench.cluster import cluster_bench
from parley.bench.forwarding import forwarding_ramp
from parley.bench.pipecat_peer import PIPECAT_VERSION, measure_pipecat
from parley.bench.realtime import realtime_turns
from parley.bench.scenarios import (
    RampLimits, admission_turns, capacity_ramp, paused_question_turns, server_stats, single_call_turns, transport_floor,
)
from parley.bench.server_process import ServerProcess, cpu_seconds
from parley.bench.speakerphone import barge_in_over_echo, speakerphone_run
from parley.bench.stt_batching import stt_batching_bench
from parley.server.config import Settings, load_settings
from parley.core import aiortc_hooks
from parley.core.net import free_loopback_port
from parley.core.logs import setup_logging

log = logging.getLogger("parley.bench")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="parley bench",
        description="Measure voice-to-voice latency and capacity with real WebRTC callers on loopback, "
        "against a naive baseline and the transport floor, in one run.",
    )
    _server_options(p)
    _turn_options(p)
    _load_options(p)
    _forwarding_options(p)
    _speakerphone_options(p)
    return p


def _server_options(parser: argparse.ArgumentParser) -> None:
    p = parser.add_argument_group("servers", "which servers are measured, with which models, and where results go")
    p.add_argument("--url", help="measure a Parley already running here (loopback) instead of starting one")
    p.add_argument(
        "--profile", choices=["cpu", "gpu"], default="cpu",
        help="cpu: embedded models (default); gpu: faster-whisper on CUDA, vLLM at --llm-url, Fish Speech at --tts-url",
    )
    p.add_argument("--llm-model", help="LLM for the servers the bench starts (default: the profile's)")
    p.add_argument("--llm-url", help="OpenAI-compatible LLM URL (gpu profile default: http://127.0.0.1:8000/v1)")
    p.add_argument("--tts-url", help="Fish Speech API server (gpu profile default: http://127.0.0.1:8081)")
    p.add_argument("--stt-model", help="Whisper model for the servers the bench starts")
    p.add_argument("--results", type=Path, default=Path("bench/results"), help="where JSON and PNG go")
    p.add_argument("--questions-dir", type=Path, default=Path("bench/questions"), help="cache of the spoken questions")


def _turn_options(parser: argparse.ArgumentParser) -> None:
    p = parser.add_argument_group("turns", "voice-to-voice latency, per configuration")
    p.add_argument("--questions", type=int, default=24, help="how many of the 24 spoken questions to ask per configuration")
    p.add_argument("--no-baseline", action="store_true", help="skip the naive baseline configuration")
    p.add_argument(
        "--no-sequential", action="store_true",
        help="skip the sequential configuration (silence endpoint, no overlap) measured beside the default one",
    )
    p.add_argument("--paused", type=int, default=8, help="how many paused questions to ask per configuration (0: none)")
    p.add_argument(
        "--no-monologue", action="store_true",
        help="skip real speech read sentence after sentence with 0.6 and 0.9 s pauses (LibriVox), per configuration",
    )
    p.add_argument(
        "--browser", type=int, default=12,
        help="questions asked through the bundled page in headless chromium, timed inside the browser (0: skip)",
    )
    p.add_argument("--mandarin", type=int, default=12, help="Mandarin questions on a zh server (0: skip)")
    p.add_argument("--mandarin-paused", type=int, default=8,
                   help="Mandarin questions with a pause inside, on the same zh server (0: skip; needs --mandarin)")
    p.add_argument(
        "--no-realtime", action="store_true",
        help="skip the same questions over OpenAI's Realtime WebSocket API (/v1/realtime, the official SDK)",
    )
    p.add_argument(
        "--no-pipecat", action="store_true",
        help="skip Pipecat on the same models (its own virtualenv, made once under ~/.cache/parley/pipecat-venv)",
    )


def _load_options(parser: argparse.ArgumentParser) -> None:
    p = parser.add_argument_group("load", "calls at once, admission control and STT batching")
    p.add_argument("--ramp", default="1,2,4,8,16", help="concurrent-call steps (stops at the first failing step)")
    p.add_argument("--step-seconds", type=float, default=30.0, help="duration of each ramp step")
    p.add_argument("--max-p95", type=float, default=3.0, help="a ramp step fails above this p95 voice-to-voice (s)")
    p.add_argument("--no-ramp", action="store_true", help="skip the capacity ramps")
    p.add_argument(
        "--no-admission", action="store_true",
        help="skip the admission-control run (agent.capacity 1: one call asks while a second is refused busy)",
    )
    p.add_argument("--stt-batching", default="1,2,4,8", help="utterance counts for the STT batching comparison")
    p.add_argument("--no-stt-batching", action="store_true", help="skip the STT batching comparison")


def _forwarding_options(parser: argparse.ArgumentParser) -> None:
    p = parser.add_argument_group("forwarding", "the SFU without an agent, in one process and in several")
    p.add_argument("--forwarding", default="2,4,8,16", help="people per step of the SFU forwarding ramp (no agent)")
    p.add_argument("--forwarding-room-size", type=int, default=2, help="people per room in the forwarding ramp")
    p.add_argument("--forwarding-seconds", type=float, default=10.0, help="measuring window of each forwarding step")
    p.add_argument("--no-forwarding", action="store_true", help="skip the SFU forwarding ramp")
    p.add_argument("--forwarding-only", action="store_true", help="run only the SFU forwarding ramp")
    p.add_argument(
        "--cluster-workers", default="1,2",
        help="worker counts (parley serve --workers) whose forwarding capacity is compared, with join latency "
        "through the room's node and through another",
    )
    p.add_argument("--cluster-people", default="8,16,24,32", help="people per step of each worker count's forwarding ramp")
    p.add_argument("--no-cluster", action="store_true", help="skip the workers comparison")
    p.add_argument("--cluster-only", action="store_true", help="run only the workers comparison")


def _speakerphone_options(parser: argparse.ArgumentParser) -> None:
    p = parser.add_argument_group("speakerphone", "the server's echo cancellation against a software speakerphone")
    p.add_argument(
        "--speakerphone", type=int, default=20,
        help="replies per echo level asked from a software speakerphone, with the server's echo cancellation (0: skip)",
    )
    p.add_argument("--speakerphone-baseline", type=int, default=3, help="replies per echo level without it (each can take the whole window)")
    p.add_argument("--speakerphone-window", type=float, default=30.0, help="seconds a speakerphone turn may take")
    p.add_argument("--speakerphone-barge-ins", type=int, default=5, help="barge-ins spoken over the echo")
    p.add_argument("--speakerphone-only", action="store_true", help="run only the speakerphone comparison")


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


BENCH_API_KEY = "bench-admin-key-0001"


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


def _settings(args: argparse.Namespace) -> Settings:
    """The settings a Parley process started by the bench would load (for what the bench runs in this one)."""
    return load_settings(environ={**os.environ, **_model_env(args)})


def _server_env(args: argparse.Namespace, pipeline: str, mode: str = "voice") -> dict[str, str]:
    # The capacity ramp measures how many calls the machine sustains: admission control (agent.capacity)
    # would stop it at its own default, so the bench's servers admit up to the ramp's ceiling.
    return {"PARLEY_AGENT__PIPELINE": pipeline, "PARLEY_AGENT__MODE": mode, "PARLEY_HTTP__MAX_CALLS": "64",
            "PARLEY_AGENT__CAPACITY": "64", **_model_env(args)}


# Today's default ("streaming": end-of-turn model, transcription from the pause on) against the
# pipeline before it ("sequential": a fixed 450 ms of silence, then STT, then the LLM).
SEQUENTIAL = {"PARLEY_VAD__ENDPOINT": "silence", "PARLEY_AGENT__SPECULATE": "false"}


async def _speakerphone(args: argparse.Namespace, questions: list, logs: Path) -> dict[str, Any]:
    """The agent on a speakerphone (its voice back in the caller's microphone): without and with the
    server's echo cancellation, same questions, same echo levels; then a barge-in over the echo."""
    samples = [q.samples for q in questions]
    out: dict[str, Any] = {}
    for name, mode, replies in (("off", "off", args.speakerphone_baseline), ("on", "on", args.speakerphone)):
        if not replies:
            continue
        log.info("speakerphone: %d replies per echo level, server echo cancellation %s", replies, mode)
        env = {**_server_env(args, "streaming"), "PARLEY_AUDIO__ECHO_CANCELLATION": mode}
        async with ServerProcess(env, logs / f"speakerphone-{name}.log") as server:
            out[name] = await speakerphone_run(server.url, server.pid, samples, replies, args.speakerphone_window, f"speakerphone-{name}")
            if name == "on":
                ask, cut_in = load_barge_in(args.questions_dir)
                out["barge_in"] = await barge_in_over_echo(server.url, ask.samples, cut_in.samples, tries=args.speakerphone_barge_ins)
    return out


@dataclasses.dataclass
class _Plan:
    """What one bench run asks, and where its servers' logs go."""

    questions: list[Question]
    paused: list[Question]
    monologues: list[Question]
    steps: list[int]
    limits: RampLimits
    logs: Path


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    aiortc_hooks.install(aiortc_hooks.HookSettings(host_addresses=("127.0.0.1",)))  # our callers offer loopback only
    started = dt.datetime.now(dt.timezone.utc)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    plan = _Plan(
        questions=load_questions(args.questions_dir, args.questions),
        paused=load_paused_questions(args.questions_dir, args.paused) if args.paused else [],
        monologues=[] if args.no_monologue else load_monologues(),
        steps=[int(x) for x in args.ramp.split(",") if x.strip()],
        limits=RampLimits(p95_s=args.max_p95),
        logs=args.results / "logs" / stamp,
    )
    run: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"), "machine": _machine(), "profile": args.profile,
        "models": args.llm_url or args.llm_model or "defaults (Whisper tiny.en, Qwen2.5-Coder-1.5B-Instruct Q4_K_M, hibari)",
        "limits": {"p95_s": plan.limits.p95_s, "late_frame_ratio": plan.limits.late_frame_ratio},
        "single_call": {}, "paused": {}, "monologue": {}, "early_stt": {}, "speculative_replies": {}, "ramp": {}, "max_calls_sustained": {}, "not_measured": [],
    }
    await _side_benches(args, plan, run)
    if args.forwarding_only or args.cluster_only or args.speakerphone_only:
        pass
    elif args.url:
        await _measure(args, plan, run, "streaming", args.url, None)
        run["not_measured"] += ["transport floor and naive baseline (the bench did not start the server: --url)"]
        if args.browser:
            run["not_measured"].append("browser (it runs a fresh server of its own, and --url asks for yours)")
    else:
        await _configurations(args, plan, run)
    _ratios(run)
    run["json"] = str(args.results / f"{stamp}.json")
    run["png"] = str(args.results / f"{stamp}.png")
    return run


async def _measure(args: argparse.Namespace, plan: _Plan, run: dict[str, Any], name: str, url: str, pid: int | None,
                   ramp: bool = True) -> None:
    """One configuration's server: the questions on one call, the paused ones, the monologues, what it started
    ahead of the turns, and (unless ``ramp`` is false) its capacity ramp."""
    log.info("%s: %d questions on one call", name, len(plan.questions))
    run["single_call"][name] = await _one_call(url, plan.questions, pid)
    if plan.paused and name != "naive":
        log.info("%s: %d questions with a pause inside", name, len(plan.paused))
        run["paused"][name] = await paused_question_turns(url, plan.paused)
    if plan.monologues and name != "naive":
        log.info("%s: %d monologues (real speech, sentence after sentence)", name, len(plan.monologues))
        run["monologue"][name] = await paused_question_turns(url, plan.monologues, timeout=60.0)
    inference = (await server_stats(url)).get("inference") or {}
    if inference.get("early_stt"):
        run["early_stt"][name] = inference["early_stt"]
    if inference.get("speculative_replies"):
        run["speculative_replies"][name] = inference["speculative_replies"]
    if ramp and not args.no_ramp:
        steps = await capacity_ramp(url, plan.questions, plan.steps, args.step_seconds, pid, plan.limits)
        run["ramp"][name] = [vars(s) for s in steps]
        run["max_calls_sustained"][name] = max((s.calls for s in steps if s.sustained), default=0)


async def _one_call(url: str, questions: list[Question], pid: int | None) -> dict[str, Any]:
    """``questions`` asked on one call, with the cores the server's process tree (LLM child included) kept
    busy meanwhile when its ``pid`` is known."""
    started_cpu, started_at = (cpu_seconds(pid) if pid else 0.0), time.monotonic()
    turns = await single_call_turns(url, questions)
    if pid:
        turns["cpu_cores_busy"] = (cpu_seconds(pid) - started_cpu) / (time.monotonic() - started_at)
    return turns


async def _side_benches(args: argparse.Namespace, plan: _Plan, run: dict[str, Any]) -> None:
    """What does not time a conversation: STT batching, the speakerphone, workers, SFU forwarding."""
    questions, logs = plan.questions, plan.logs
    if not (args.no_stt_batching or args.forwarding_only or args.cluster_only or args.speakerphone_only):
        settings = _settings(args)
        sizes = [int(x) for x in args.stt_batching.split(",") if x.strip()]
        log.info("STT batching: %s utterances at once, one by one and batched (%s on %s)", sizes, settings.stt.model, settings.stt.device)
        run["stt_batching"] = await stt_batching_bench(settings, questions, sizes)
    if args.speakerphone_only or (args.speakerphone and not (args.url or args.forwarding_only or args.cluster_only)):
        run["speakerphone"] = await _speakerphone(args, questions, logs)
    elif args.speakerphone and args.url:
        run["not_measured"].append("speakerphone (the bench did not start the server: --url)")
    if args.speakerphone_only:
        pass
    elif args.cluster_only or not (args.no_cluster or args.url or args.forwarding_only):
        counts = [int(x) for x in args.cluster_workers.split(",") if x.strip()]
        env = {**_server_env(args, "streaming", "echo"), "PARLEY_AUTH__API_KEY": BENCH_API_KEY}
        people = [int(x) for x in args.cluster_people.split(",") if x.strip()]
        run["cluster"] = await cluster_bench(env, BENCH_API_KEY, logs, questions[0].samples, counts, people, args.forwarding_seconds)
    elif args.url and not args.no_cluster:
        run["not_measured"].append("workers comparison (the bench did not start the server: --url)")
    if args.cluster_only:
        pass
    elif args.forwarding_only or not (args.no_forwarding or args.url):
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


async def _configurations(args: argparse.Namespace, plan: _Plan, run: dict[str, Any]) -> None:
    """Servers the bench starts itself, one after another: the echo floor, streaming (and the Realtime API on
    it), the browser, Mandarin, admission control, sequential, Pipecat, naive."""
    questions, logs = plan.questions, plan.logs
    log.info("transport floor: starting an echo server")
    async with ServerProcess(_server_env(args, "streaming", "echo"), logs / "echo.log") as echo:
        run["transport_floor"] = await transport_floor(echo.url)
    log.info("starting Parley (streaming pipeline: end-of-turn model, overlapped transcription)")
    streaming_env = {**_server_env(args, "streaming"), "PARLEY_AUTH__API_KEY": BENCH_API_KEY}
    async with ServerProcess(streaming_env, logs / "streaming.log") as server:
        await _measure(args, plan, run, "streaming", server.url, server.pid)
        if not args.no_realtime:
            log.info("realtime: %d questions over OpenAI's Realtime WebSocket API (the official SDK)", len(questions))
            run["single_call"]["realtime_ws"] = await realtime_turns(server.url, BENCH_API_KEY, questions)
    if args.browser:
        log.info("browser: %d questions through the bundled page in headless chromium (a fresh server)", args.browser)
        run["browser"] = await asyncio.to_thread(
            browser_turns, questions[: args.browser], logs / "browser", free_loopback_port(), _model_env(args),
        )
        if "skipped" in run["browser"]:
            run["not_measured"].append(f"browser ({run['browser']['skipped']})")
    if args.mandarin and args.profile == "cpu":
        await _mandarin(args, run, logs)
    elif args.mandarin:
        run["not_measured"].append("Mandarin (set up for the cpu profile's embedded models only)")
    if not args.no_admission:
        log.info("starting Parley with agent.capacity 1 (admission control: a second agent call is refused)")
        async with ServerProcess({**_server_env(args, "streaming"), "PARLEY_AGENT__CAPACITY": "1"}, logs / "admission.log") as server:
            run["admission"] = await admission_turns(server.url, questions[: max(4, len(questions) // 2)])
    else:
        run["not_measured"].append("admission control (--no-admission)")
    if not args.no_sequential:
        log.info("starting Parley (sequential: 450 ms silence endpoint, no overlap)")
        async with ServerProcess({**_server_env(args, "streaming"), **SEQUENTIAL}, logs / "sequential.log") as server:
            await _measure(args, plan, run, "sequential", server.url, server.pid, ramp=False)
    if not args.no_pipecat and args.profile == "cpu":
        log.info("Pipecat %s on the same models (Whisper, llama.cpp server + GGUF, hibari), the same caller", PIPECAT_VERSION)
        settings = _settings(args)
        pipecat = await measure_pipecat(settings, questions, plan.paused, logs)
        run["single_call"]["pipecat"] = pipecat["single_call"]
        if pipecat["paused"]:
            run["paused"]["pipecat"] = pipecat["paused"]
    elif not args.no_pipecat:
        run["not_measured"].append("Pipecat (set up for the cpu profile's embedded models only)")
    if not args.no_baseline:
        log.info("starting Parley with the naive baseline pipeline")
        async with ServerProcess(_server_env(args, "naive"), logs / "naive.log") as server:
            await _measure(args, plan, run, "naive", server.url, server.pid)


async def _mandarin(args: argparse.Namespace, run: dict[str, Any], logs: Path) -> None:
    """A Mandarin server (agent.language zh): its questions on one call, then its paused ones."""
    log.info("starting Parley in Mandarin (agent.language zh: Whisper base, Kokoro), %d questions", args.mandarin)
    settings = _settings(args)
    mandarin = load_mandarin_questions(args.questions_dir, settings.cache_dir, args.mandarin)
    async with ServerProcess({**_server_env(args, "streaming"), "PARLEY_AGENT__LANGUAGE": "zh"}, logs / "mandarin.log") as server:
        run["single_call"]["mandarin"] = await _one_call(server.url, mandarin, server.pid)
        if args.mandarin_paused:
            log.info("mandarin: %d questions with a pause inside", args.mandarin_paused)
            paused_zh = load_mandarin_paused_questions(args.questions_dir, settings.cache_dir, args.mandarin_paused)
            run["paused"]["mandarin"] = await paused_question_turns(server.url, paused_zh)


def _ratios(run: dict[str, Any]) -> None:
    """Each other configuration's p50 over streaming's, where both were measured."""
    ours = run["single_call"].get("streaming")
    for other, key in (("naive", "baseline_ratio_p50"), ("sequential", "sequential_ratio_p50"), ("pipecat", "pipecat_ratio_p50")):
        theirs = run["single_call"].get(other)
        if theirs and ours and theirs["voice_to_voice_s"]["p50"] and ours["voice_to_voice_s"]["p50"]:
            run[key] = theirs["voice_to_voice_s"]["p50"] / ours["voice_to_voice_s"]["p50"]


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
