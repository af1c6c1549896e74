"""Render a benchmark run: a markdown table for stdout, JSON and a PNG plot for the results folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from parley.agents.stage_timer import STAGES

log = logging.getLogger(__name__)


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.0f}"


def _n(value: float | None, fmt: str = "{:.0f}") -> str:
    return "—" if value is None else fmt.format(value)


def _table(title: str, columns: list[str]) -> list[str]:
    """A section title and the head of a markdown table."""
    return [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def _of(count: int | None, total: int) -> str:
    return "–" if count is None else f"{count}/{total}"


def markdown(run: dict[str, Any]) -> str:
    """The human-readable report."""
    lines = [f"## Parley bench {run['started_at']} — {run['machine']}", ""]
    lines.append(f"Profile `{run['profile']}`; models: {run['models']}. All figures from this run.")
    lines.append("")
    single = run.get("single_call", {})
    lines += _single_call_lines(run, single)
    lines += _browser_lines(run.get("browser"))
    lines += _admission_lines(run.get("admission"))
    lines += _paused_lines(run.get("paused") or {})
    lines += _monologue_lines(run.get("monologue") or {})
    lines += _overlap_lines(run)
    lines += _floor_lines(run.get("transport_floor"))
    lines += _stage_lines(single)
    for name, steps in run.get("ramp", {}).items():
        lines += _ramp_lines(run, name, steps)
    lines += _stt_batching_lines(run.get("stt_batching"))
    lines += _forwarding_lines(run.get("forwarding"))
    lines += _cluster_lines(run.get("cluster"))
    lines += _speakerphone_lines(run.get("speakerphone"))
    if run.get("not_measured"):
        lines += ["Not measured in this run: " + "; ".join(run["not_measured"]), ""]
    return "\n".join(lines)


def _single_call_lines(run: dict[str, Any], single: dict[str, Any]) -> list[str]:
    """Voice to voice per configuration of one call, the ratios against streaming, and the CPU they took."""
    if not single:
        return []
    lines = _table("Voice-to-voice latency, one call (caller's last speech sample → first agent sample heard)",
                   ["configuration", "answered", "p50 ms", "p95 ms", "mean ms"])
    for name, data in single.items():
        v = data["voice_to_voice_s"]
        lines.append(f"| {name} | {data['answered']}/{data['questions']} | {_ms(v['p50'])} | {_ms(v['p95'])} | {_ms(v['mean'])} |")
    for other, key in (("naive", "baseline_ratio_p50"), ("sequential", "sequential_ratio_p50"), ("pipecat", "pipecat_ratio_p50")):
        ratio = run.get(key)
        if ratio:
            lines.append(f"| **{other} ÷ streaming (p50)** | | **{ratio:.2f}×** | | |")
    lines.append("")
    busy = {name: data["cpu_cores_busy"] for name, data in single.items() if data.get("cpu_cores_busy") is not None}
    if busy:
        lines.append("CPU while answering one call (cores busy, the server's process tree with its LLM): "
                     + ", ".join(f"{name} {value:.2f}" for name, value in busy.items()) + ".")
        lines.append("")
    return lines


def _browser_lines(browser: dict[str, Any] | None) -> list[str]:
    """The questions asked through the bundled page in headless chromium."""
    if browser and "voice_to_voice_s" in browser:
        v = browser["voice_to_voice_s"]
        first = browser["turns"][0]["voice_to_voice_s"] if browser["turns"] else None
        lines = _table("Heard in a real browser (headless chromium, the bundled page, a fresh server; timed in the page)",
                       ["answered", "p50 ms", "p95 ms", "first question ms"])
        return lines + [f"| {browser['answered']}/{browser['questions']} | {_ms(v['p50'])} | {_ms(v['p95'])} | {_ms(first)} |", ""]
    if browser and "error" in browser:
        return [f"Browser run failed: {browser['error']}", ""]
    return []


def _admission_lines(admission: dict[str, Any] | None) -> list[str]:
    """One call alone and while a second caller is refused (agent.capacity 1)."""
    if not admission:
        return []
    lines = _table("Admission control (agent.capacity 1): one call, alone and while a second caller is refused",
                   ["phase", "answered", "p50 ms", "p95 ms"])
    for phase in ("alone", "while_refusing"):
        data = admission[phase]
        v = data["voice_to_voice_s"]
        lines.append(f"| {phase.replace('_', ' ')} | {data['answered']}/{data['questions']} | {_ms(v['p50'])} | {_ms(v['p95'])} |")
    attempts = admission.get("join_attempts") or {}
    lines.append("")
    lines.append("Second caller's join attempts: " + (", ".join(f"{k} {v}" for k, v in sorted(attempts.items())) or "none") + ".")
    lines.append("")
    return lines


def _paused_lines(paused: dict[str, Any]) -> list[str]:
    """Premature replies to questions with a pause inside, per configuration."""
    if not paused:
        return []
    lines = _table("Questions with a pause inside (0.6–1.2 s of silence mid-sentence)",
                   ["configuration", "premature replies", "answered", "one caller line", "p50 ms (not premature)", "p95 ms"])
    for name, data in paused.items():
        v = data["voice_to_voice_s"]
        lines.append(
            f"| {name} | {data['premature']}/{data['questions']} | {data['answered']}/{data['questions']} | "
            f"{_of(data['one_user_line'], data['questions'])} | {_ms(v['p50'])} | {_ms(v['p95'])} |"
        )
    return lines + ["", "Premature: the agent's voice reached the caller before the question's last word.", ""]


def _monologue_lines(monologue: dict[str, Any]) -> list[str]:
    """Real speech read sentence after sentence: heard early or not, caller lines, the answer's delay."""
    if not monologue:
        return []
    lines = _table("Real speech, sentence after sentence (LibriVox: 4 sentences read with 0.6 / 0.9 s pauses, one call)",
                   ["configuration", "pauses", "agent heard before the last word", "caller lines", "answer after the last word ms"])
    for name, data in monologue.items():
        for turn in data["turns"]:
            heard = turn["voice_to_voice_s"]
            lines.append(f"| {name} | {turn['question'].split(', ')[-1]} | {'yes' if turn['premature'] else 'no'} | "
                         f"{turn['caller_lines']} | {_ms(heard)} |")
    lines.append("")
    return lines


def _overlap_lines(run: dict[str, Any]) -> list[str]:
    """What the overlap started ahead of the turn's end: early transcriptions and speculative replies."""
    lines = []
    for name, early in (run.get("early_stt") or {}).items():
        lines.append(
            f"Early transcription ({name}): {early['started']} started at a pause, {early['used']} were the final "
            f"transcript, {early.get('settled', 0)} kept as a settled sentence inside a longer utterance, "
            f"{early['superseded']} thrown away (more speech came), {early['wasted_s']:.1f} s of model time wasted."
        )
        if early.get("heard_again") or early.get("heard_unsure"):
            lines.append(
                f"The larger ear ({name}): {early.get('heard_unsure', 0)} transcripts tiny.en was unsure of heard again at "
                f"once ({early.get('unsure_replaced', 0)} replaced by surer words); {early.get('heard_again', 0)} held as cut "
                f"short heard again in the hold ({early.get('heard_whole_again', 0)} ended it)."
            )
    for name, spec in (run.get("speculative_replies") or {}).items():
        if not spec.get("started") and not spec.get("primes"):
            continue
        lines.append(
            f"Speculative replies ({name}): {spec['started']} LLM replies started before the end of the turn, "
            f"{spec['used']} used, {spec['cancelled']} cancelled ({spec['wasted_s']:.1f} s of LLM time wasted); "
            f"{spec.get('primes', 0)} prompt-cache primes while the caller spoke, "
            f"{spec.get('after_reply_primes', 0)} after a reply was generated."
        )
    if run.get("early_stt") or run.get("speculative_replies"):
        lines.append("")
    return lines


def _floor_lines(floor: dict[str, Any] | None) -> list[str]:
    """The echo server's round trip: transport alone, no agent."""
    if not floor:
        return []
    rt = floor["round_trip_s"]
    return [
        "### Transport floor (echo through the same server, no agent)",
        "",
        f"Round trip p50 {_ms(rt['p50'])} ms, p95 {_ms(rt['p95'])} ms over {rt['n']} bursts.",
        "",
    ]


def _stage_lines(single: dict[str, Any]) -> list[str]:
    """The server's per-stage split of one call's turns, and the longest silence inside a reply."""
    split = [(name, single[name]) for name in ("streaming", "mandarin", "sequential") if name in single]
    if not split:
        return []
    first = ["endpoint_wait_ms", "end_of_turn_ms", "stt_ms", "sentence_end_ms"]
    order = [*first, *[s for s in STAGES if s not in first]]
    lines = [
        "### Per-stage split, one call (server's `turn.metrics`, median / p95 ms)",
        "",
        "| configuration | endpoint wait | of it, end-of-turn model | STT after endpoint | words judged (LLM) | LLM first token | "
        "LLM first clause | TTS first audio | playout wait | server total | transport + client |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, data in split:
        stages = data["stages_ms"]
        cells = [f"{_n(stages.get(k, {}).get('p50'))} / {_n(stages.get(k, {}).get('p95'))}" for k in order]
        tr = data["transport_and_client_ms"]
        cells.append(f"{_n(tr['p50'])} / {_n(tr['p95'])}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "STT after endpoint: what is left of the transcription once the turn has ended (it starts at the "
              "pause when overlapped); LLM first token and first clause count from the transcript; server total = "
              "speech end → first frame sent; transport + client = caller-measured voice-to-voice − server total.", ""]
    quiet = [
        f"{name} {_ms(q['p50'])} / {_ms(q['p95'])} ms (longest {_ms(q['max'])})"
        for name, data in split if (q := data.get("reply_longest_quiet_s")) and q.get("n")
    ]
    if quiet:
        lines += ["Longest silence inside a reply as the caller heard it (between clauses and sentences: a reply "
                  "that stalls waiting for the LLM shows here), median / p95: " + "; ".join(quiet) + ".", ""]
    return lines


def _ramp_lines(run: dict[str, Any], name: str, steps: list[dict[str, Any]]) -> list[str]:
    """One configuration's capacity ramp, step by step, and the calls it sustained."""
    lines = [
        f"### Capacity ramp, {name} (stops when p95 > {run['limits']['p95_s']} s, frames fall behind, or questions go unanswered)",
        "",
        "| calls | turns | answered | p50 ms | p95 ms | frames sent | late | resyncs | STT utterances / passes | CPU % | RSS MB | RSS/call MB | sustained |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        v = s["voice_to_voice_s"]
        lines.append(
            f"| {s['calls']} | {s['turns']} | {s['answered']} | {_ms(v['p50'])} | {_ms(v['p95'])} | {s['frames_sent']} | "
            f"{s['late_frames']} | {s['resyncs']} | {s.get('stt_utterances', 0)} / {s.get('stt_passes', 0)} | "
            f"{_n(s['cpu_percent'])} | {_n(s['rss_mb'])} | "
            f"{_n(s['rss_per_call_mb'], '{:.1f}')} | {'yes' if s['sustained'] else 'no: ' + '; '.join(s['reasons'])} |"
        )
    return lines + ["", f"Maximum calls sustained ({name}): **{run['max_calls_sustained'].get(name, 0)}**", ""]


def _forwarding_lines(forwarding: dict[str, Any] | None) -> list[str]:
    """The SFU's cost per forwarded stream, against what transcoding would cost."""
    if not forwarding:
        return []
    codec = forwarding["codec"]
    lines = [
        "### SFU forwarding (rooms of people, no agent; Opus packets forwarded, never transcoded)",
        "",
        f"Server idle: {forwarding['idle_cpu_percent']:.1f} % CPU.",
        "",
        "| people | rooms | forwarded streams | server CPU % | CPU % per stream | frames/s per stream | max gap ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in forwarding["steps"]:
        lines.append(
            f"| {s['people']} | {s['rooms']} | {s['forwarded_streams']} | {s['server_cpu_percent']:.1f} | "
            f"{s['cpu_per_stream_percent']:.2f} | {s['frames_per_stream_per_s']:.1f} | {_n(s['max_gap_ms'])} |"
        )
    return lines + [
        "",
        f"For comparison, in this process: Opus encode {codec['encode_ms_per_frame']:.3f} ms and decode "
        f"{codec['decode_ms_per_frame']:.3f} ms per 20 ms frame, so transcoding a stream (an MCU) would add "
        f"~{codec['transcode_percent_per_stream']:.2f} % of a core per stream; the agent's voice, encoded once per "
        f"room, costs ~{codec['agent_voice_percent_per_room']:.2f} % per room whatever the number of listeners.",
        "",
    ]


def _speakerphone_lines(phone: dict[str, Any] | None) -> list[str]:
    """Self-interruptions on a software speakerphone without and with the server's echo cancellation."""
    if not phone:
        return []
    lines = [
        "### Speakerphone (the agent's voice back in the caller's microphone: delayed, filtered, attenuated, room noise)",
        "",
        "| server echo cancellation | echo | replies | answered | replies with a self-interruption | self-interruptions |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("off", "on"):
        for level in (phone.get(name) or {}).get("levels", []):
            lines.append(f"| {name} | {level['echo']} | {level['replies']} | {level['answered']} | "
                         f"{level['turns_with_self_interruption']} | {level['self_interruptions']} |")
    lines.append("")
    on, off = phone.get("on") or {}, phone.get("off") or {}
    stats = on.get("echo_cancellation") or {}
    if stats.get("erle_db") is not None:
        lines.append(f"Echo return loss enhancement while the agent talked: **{stats['erle_db']:.1f} dB**; "
                     f"AEC CPU {stats['cpu_s']:.2f} s for {stats['blocks'] / 100:.0f} s of caller audio "
                     f"({100 * stats['cpu_s'] / max(stats['blocks'] / 100, 1e-9):.2f} % of a core per call).")
    if on.get("server_cpu_percent") is not None and off.get("server_cpu_percent") is not None:
        lines.append(f"Server CPU while answering: {off['server_cpu_percent']:.0f} % without, {on['server_cpu_percent']:.0f} % with.")
    barge = phone.get("barge_in")
    if barge:
        stop = barge["stop_s"]
        over = barge.get("reply_over", 0)
        spoken_over = barge["tries"] - over
        lines.append(f"A real barge-in spoken over the echo: stopped the agent in {stop['n']}/{spoken_over} tries "
                     f"made while it spoke ({over} more came after the reply had ended), "
                     f"p50 {_ms(stop['p50'])} ms, max {_ms(stop['max'])} ms after the caller began.")
    return lines + [""]


def _cluster_lines(cluster: dict[str, Any] | None) -> list[str]:
    """Forwarding capacity by worker count, and join latency through the room's node vs another."""
    if not cluster:
        return []
    lines = [
        "### Workers (`parley serve --workers N`, rooms of 2 people, no agent, one Redis)",
        "",
        "| workers | people | forwarded streams | server CPU % (all processes) | busiest process CPU % | CPU % per stream | "
        "frames/s per stream | max gap ms | load generator CPU % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for count, ramp in cluster["forwarding"].items():
        for s in ramp["steps"]:
            lines.append(
                f"| {count} | {s['people']} | {s['forwarded_streams']} | {s['server_cpu_percent']:.1f} | "
                f"{s['busiest_process_cpu_percent']:.1f} | {s['cpu_per_stream_percent']:.2f} | "
                f"{s['frames_per_stream_per_s']:.1f} | {_n(s['max_gap_ms'])} | {s['load_generator_cpu_percent']:.0f} |"
            )
    sustained = cluster["sustained_streams"]
    lines += ["", "Streams sustained (every stream ≥ 45 frames/s, gaps ≤ 100 ms): "
              + ", ".join(f"{count} worker(s): **{n}**" for count, n in sustained.items()), ""]
    joins = cluster.get("join_s")
    if joins:
        lines += [
            "| call set-up (WebSocket, join, offer/answer) | n | p50 | p95 |",
            "|---|---|---|---|",
            *(f"| {label} | {joins[key]['n']} | {_ms(joins[key]['p50'])} | {_ms(joins[key]['p95'])} |"
              for key, label in (("owner", "straight to the room's node"), ("other", "through another node (redirect)"))),
            "",
        ]
    return lines


def write_json(run: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run, indent=1, default=str))


def write_plot(run: dict[str, Any], path: Path) -> bool:
    """Latency p50/p95 against concurrent calls, one line pair per configuration; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plot (pip install 'parley[bench]')")
        return False
    forwarding = (run.get("forwarding") or {}).get("steps") or []
    voice = bool(run.get("ramp"))  # latency against concurrent calls (with the transport floor drawn in)
    single = {name: d["voice_to_voice_s"] for name, d in (run.get("single_call") or {}).items() if d["voice_to_voice_s"].get("p50")}
    panels = int(voice) + int(bool(forwarding)) + int(bool(single))
    if not panels:
        return False
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 4.2), squeeze=False)
    if single:
        _one_call_panel(axes[0][int(voice)], single)
    if forwarding:
        _forwarding_panel(axes[0][-1], forwarding)
    if voice:
        _ramp_panel(axes[0][0], run)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _one_call_panel(ax: Any, single: dict[str, dict[str, Any]]) -> None:
    """The configurations side by side (Parley's, and Pipecat's on the same models)."""
    names = list(single)
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [single[n]["p50"] * 1000 for n in names], 0.4, label="p50", color="tab:blue")
    ax.bar([x + 0.2 for x in xs], [(single[n]["p95"] or 0) * 1000 for n in names], 0.4, label="p95", color="tab:orange")
    ax.set_xticks(list(xs), names)
    ax.set_ylabel("voice-to-voice latency, one call (ms)")
    ax.set_title("One call, the same questions and caller", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def _forwarding_panel(ax: Any, forwarding: list[dict[str, Any]]) -> None:
    streams = [s["forwarded_streams"] for s in forwarding]
    ax.plot(streams, [s["server_cpu_percent"] for s in forwarding], "-o", color="tab:purple", label="server CPU %")
    ax.set_xlabel(f"forwarded audio streams (rooms of {forwarding[0]['room_size']}, no agent)")
    ax.set_ylabel("% of one core")
    ax.set_title("SFU forwarding cost", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def _ramp_panel(ax: Any, run: dict[str, Any]) -> None:
    """Latency against concurrent calls, with the transport floor drawn in."""
    import matplotlib.ticker

    for (name, steps), color in zip(run.get("ramp", {}).items(), ["tab:blue", "tab:orange", "tab:green"]):
        calls = [s["calls"] for s in steps]
        for key, style in (("p50", "-o"), ("p95", "--s")):
            ys = [(s["voice_to_voice_s"][key] or float("nan")) * 1000 for s in steps]
            ax.plot(calls, ys, style, color=color, label=f"{name} {key}")
    floor = (run.get("transport_floor") or {}).get("round_trip_s", {}).get("p50")
    if floor:
        ax.axhline(floor * 1000, color="grey", linestyle=":", label="transport floor (echo p50)")
    ax.set_xlabel("concurrent calls")
    ax.set_ylabel("voice-to-voice latency (ms)")
    ax.set_xscale("log", base=2)
    all_calls = sorted({s["calls"] for steps in run.get("ramp", {}).values() for s in steps})
    if all_calls:
        ax.set_xticks(all_calls)
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_title(f"Parley — {run['machine']}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def _stt_batching_lines(section: dict | None) -> list[str]:
    if not section:
        return []
    if "skipped" in section:
        return ["### STT batching", "", f"Not measured: {section['skipped']}.", ""]
    lines = [
        f"### STT batching: N utterances ending together ({section['model']} on {section['device']}, "
        f"{section['compute_type']}; window {section['window_ms']:g} ms, max batch {section['max_batch']})",
        "",
        "| utterances | mode | model passes | wall s | utterances/s | latency p50 ms | latency p95 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in section["rows"]:
        lat = r["latency_ms"]
        lines.append(
            f"| {r['utterances']} | {r['mode']} | {r['model_passes']} | {r['wall_s']:.2f} | {_n(r['utterances_per_s'], '{:.2f}')} | "
            f"{_n(lat['p50'])} | {_n(lat['p95'])} |"
        )
    return lines + ["", "One by one: each utterance is its own model call on the inference pool (no batching).", ""]
