"""Voice-to-voice latency heard in a real browser: Debian's headless chromium opens the bundled page, presses
Call, and its fake microphone (one WAV: the questions with long silences between them) asks them in turn.

The page runs as a person would use it (`parley serve --dev`, the page's own audio element, Chromium's
echo canceller, noise suppression and gain control on the microphone, its jitter buffer on the agent's
voice). A tap installed before the page's scripts feeds the microphone track the page sends and the agent's
track it receives into one WebAudio processor (tests/e2e/call_page.mjs, mode ``latency``), so the end of
each question and the agent's first sound are read off the same sample clock. Not included: the sound
card's output latency (tens of ms on real hardware).

Runs inside a private network namespace with only loopback (tests/e2e/run_in_netns.sh), as the browser
tests do; needs chromium, node with tests/e2e's playwright-core (`make test` installs both) and unshare.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parley.bench.questions import RATE, Question
from parley.bench.stats import summary
from parley.core.audio import write_wav
from parley.signaling.client import LOUD

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
E2E = ROOT / "tests" / "e2e"
LEAD_S = 4.0  # silence before the first question: the call connects
GAP_S = 11.0  # silence after each question: the whole reply is heard before the next one
TAIL_S = 30.0  # silence after the last: Chromium loops the file
QUIET_S = 2.0  # a pause this long in the microphone separates two questions
TALKING_S = 0.2  # agent sound this close before a question's end: it was talking, not answering


def missing_tools() -> str | None:
    """Why the browser cannot be driven here, or ``None``."""
    if not (E2E / "run_in_netns.sh").is_file():
        return "the browser driver (tests/e2e of a source checkout) is not here"
    for binary in ("chromium", "node", "unshare"):
        if shutil.which(binary) is None:
            return f"{binary} is not installed (make test installs it)"
    if not (E2E / "node_modules" / "playwright-core").is_dir():
        return "tests/e2e/node_modules has no playwright-core (make test runs npm ci there)"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.strip()}"
    return None


def fake_mic(questions: list[Question], path: Path) -> float:
    """Write the microphone's WAV (``questions`` with silences between them); return its length in seconds."""
    silence = lambda seconds: np.zeros(int(seconds * RATE), np.float32)  # noqa: E731
    parts = [silence(LEAD_S)]
    for question in questions:
        parts += [question.samples.astype(np.float32), silence(GAP_S)]
    parts.append(silence(TAIL_S))
    samples = np.concatenate(parts)
    write_wav(path, samples, RATE)
    return samples.size / RATE - TAIL_S


@dataclass(frozen=True)
class HeardTurn:
    question_end_s: float  # on the tap's clock
    agent_sound_s: float | None

    @property
    def voice_to_voice_s(self) -> float | None:
        return None if self.agent_sound_s is None else self.agent_sound_s - self.question_end_s


def heard_turns(mic: list[float], agent: list[float], block_s: float, quiet_s: float = QUIET_S) -> list[HeardTurn]:
    """Questions in the microphone's block peaks (loud runs separated by ``quiet_s`` or more) and, for each,
    the agent's first loud block after its end and before the next question starts (none if the agent was
    already talking as the question ended: that sound answers something else)."""
    loud = [i for i, peak in enumerate(mic) if peak > LOUD]
    spans: list[tuple[int, int]] = []
    for i in loud:
        if spans and (i - spans[-1][1]) * block_s < quiet_s:
            spans[-1] = (spans[-1][0], i)
        else:
            spans.append((i, i))
    turns = []
    for n, (_, last) in enumerate(spans):
        end = last + 1  # the end of the last loud block
        stop = spans[n + 1][0] if n + 1 < len(spans) else len(agent)
        talking = any(peak > LOUD for peak in agent[max(0, end - round(TALKING_S / block_s)):end])
        sound = None if talking else next((i for i in range(end, min(stop, len(agent))) if agent[i] > LOUD), None)
        turns.append(HeardTurn(end * block_s, None if sound is None else sound * block_s))
    return turns


def browser_turns(questions: list[Question], work: Path, port: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Serve Parley (``env``: its settings) and drive one browser call through ``questions``; the report's
    ``voice_to_voice_s`` is measured in the page."""
    reason = missing_tools()
    if reason:
        return {"skipped": reason}
    work.mkdir(parents=True, exist_ok=True)
    wav = work / "browser-mic.wav"
    listen_s = fake_mic(questions, wav)
    proc = subprocess.run(
        ["unshare", "-n", str(E2E / "run_in_netns.sh"), str(wav), str(port), "60000", str(work / "browser.png"), "latency", "--dev"],
        capture_output=True, text=True, timeout=listen_s + 300,
        env={**os.environ, **(env or {}), "LISTEN_MS": str(int(listen_s * 1000))},
    )
    (work / "browser-server.log").write_text(proc.stderr)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {"ok": False, "error": proc.stdout[-500:] or "no report"}
    if not result.get("ok"):
        log.warning("the browser call failed: %s (server log: %s)", result.get("error"), work / "browser-server.log")
        return {"error": str(result.get("error")), "console": result.get("console", [])[-10:]}
    tap = result["tap"]
    turns = heard_turns(tap["mic"], tap["agent"], tap["block"] / tap["rate"])
    latencies = [t.voice_to_voice_s for t in turns if t.voice_to_voice_s is not None]
    texts = [q.text for q in questions] if len(turns) == len(questions) else [None] * len(turns)
    return {
        "questions": len(questions),
        "heard_questions": len(turns),  # questions found in the microphone's signal (should equal questions)
        "answered": len(latencies),
        "voice_to_voice_s": summary(latencies),
        "turns": [{"question": text, "voice_to_voice_s": t.voice_to_voice_s} for text, t in zip(texts, turns)],
        "user_lines": result.get("user_lines", []),
        "agent_lines": result.get("agent_lines", []),
    }
