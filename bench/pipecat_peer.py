"""The Pipecat bench peer: its own virtualenv, its server process, and the bench caller that speaks to it.

Pipecat is a dependency of the bench only: ``ensure_venv`` installs ``bench/pipecat_peer/requirements.txt``
into ``~/.cache/parley/pipecat-venv`` (never into Parley's environment), and the bot runs there as its
own process. ``SmallWebRTCCaller`` is the same aiortc microphone and recorder as ``ParleyClient``, with
Pipecat's SmallWebRTC signaling (one HTTP offer/answer) instead of Parley's WebSocket; it has no
transcripts or states to read, so a turn is timed from the audio alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from parley.bench.server_process import stop_child
from parley.signaling.client import LOUD, AudioRecorder, QueueMicrophone, TurnResult
from parley.core.net import free_loopback_port
from parley.core.peer import close_peer

log = logging.getLogger(__name__)
PEER_DIR = Path(__file__).parent / "pipecat_peer"
REQUIREMENTS = PEER_DIR / "requirements.txt"
PIPECAT_VERSION = "1.14.0"  # as pinned in pipecat_peer/requirements.txt
REPLY_DONE_SILENCE_S = 1.5  # the reply is over once the bot has been quiet this long


def venv_dir(cache_dir: Path) -> Path:
    return cache_dir / "pipecat-venv"


def ensure_venv(cache_dir: Path) -> Path:
    """The Pipecat virtualenv's python, created and installed once (re-installed if the pins change)."""
    venv = venv_dir(cache_dir)
    python = venv / "bin" / "python"
    stamp = venv / ".requirements"
    wanted = REQUIREMENTS.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    log.info("installing the Pipecat bench peer into %s (once; pinned in %s) …", venv, REQUIREMENTS)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(wanted)
    return python


@dataclass
class PipecatPeer:
    """A running Pipecat bot process (``url`` takes SmallWebRTC offers at ``/api/offer``)."""

    url: str
    process: asyncio.subprocess.Process

    @classmethod
    async def start(
        cls, python: Path, *, whisper_dir: Path, llm_url: str, llm_model: str, system_prompt: str,
        max_tokens: int, temperature: float, voice: str, log_path: Path, ready_timeout_s: float = 120.0,
    ) -> "PipecatPeer":
        port = free_loopback_port()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:
            process = await asyncio.create_subprocess_exec(
                str(python), str(PEER_DIR / "bot.py"), "--port", str(port), "--whisper-dir", str(whisper_dir),
                "--llm-url", llm_url, "--llm-model", llm_model, "--system-prompt", system_prompt,
                "--max-tokens", str(max_tokens), "--temperature", str(temperature), "--voice", voice,
                stdout=asyncio.subprocess.PIPE, stderr=log_file, start_new_session=True,
            )
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), ready_timeout_s)
        except TimeoutError:
            process.kill()
            raise RuntimeError(f"the Pipecat peer did not start within {ready_timeout_s:.0f} s; see {log_path}")
        if not line.strip().startswith(b"{"):
            await process.wait()
            raise RuntimeError(f"the Pipecat peer failed to start (exit {process.returncode}); see {log_path}")
        url = json.loads(line)["ready"]
        async with aiohttp.ClientSession() as http:  # the HTTP server starts just after the line
            for _ in range(100):
                try:
                    async with http.get(f"{url}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
        return cls(url, process)

    async def stop(self) -> None:
        await stop_child(self.process, group=True)  # the bot and anything it forked


class SmallWebRTCCaller:
    """An aiortc caller for a Pipecat SmallWebRTC bot: offer over HTTP, then audio both ways."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.pc = RTCPeerConnection()
        self.mic = QueueMicrophone()
        self.recorder = AudioRecorder()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, timeout: float = 30.0) -> None:
        self.pc.on("track", self._on_track)
        self.pc.addTrack(self.mic)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        body = {"sdp": self.pc.localDescription.sdp, "type": "offer"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
            async with http.post(f"{self.url}/api/offer", json=body) as response:
                response.raise_for_status()
                answer = await response.json()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._tasks.append(asyncio.create_task(self.recorder.run(track)))

    async def ask(self, samples: np.ndarray, timeout: float = 90.0) -> TurnResult:
        """Speak a question; the turn ends once the bot's reply has been followed by 1.5 s of quiet."""
        playback = self.mic.play(samples)
        speech_end = await playback.ended
        deadline = time.monotonic() + timeout
        heard = None
        while heard is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            heard = self.recorder.first_loud_after(speech_end)
        if heard is None:
            return TurnResult(answered=False, voice_to_voice_s=None)
        while time.monotonic() < deadline and time.monotonic() - self._last_loud() < REPLY_DONE_SILENCE_S:
            await asyncio.sleep(0.05)
        return TurnResult(answered=True, voice_to_voice_s=heard - speech_end)

    def _last_loud(self) -> float:
        for at, peak in zip(reversed(self.recorder.times), reversed(self.recorder.peaks)):
            if peak > LOUD:
                return at
        return 0.0

    async def close(self) -> None:
        await close_peer(self.pc)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _ask_paused(caller: SmallWebRTCCaller, question, timeout: float) -> dict:
    """A question with a pause inside, judged from the audio: premature if the bot spoke before its last word."""
    playback = caller.mic.play(question.samples)
    started, ended = await playback.started, await playback.ended
    early = caller.recorder.first_loud_after(started)
    deadline = time.monotonic() + timeout
    heard = caller.recorder.first_loud_after(ended)
    while heard is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        heard = caller.recorder.first_loud_after(ended)
    while heard is not None and time.monotonic() < deadline and time.monotonic() - caller._last_loud() < REPLY_DONE_SILENCE_S:
        await asyncio.sleep(0.05)
    return {
        "question": question.text, "premature": early is not None and early < ended, "answered": heard is not None,
        "voice_to_voice_s": None if heard is None else heard - ended,
    }


async def measure_pipecat(settings, questions: list, paused: list, logs: Path, timeout: float = 90.0) -> dict:
    """Start the LLM server (the same build and GGUF Parley embeds) and the Pipecat bot, ask the same
    questions with the same caller, and report like Parley's configurations (plus the CPU it used)."""
    from parley.agents.llm.embedded import EmbeddedLlm
    from parley.agents.weights import llm_model_path, whisper_model_dir
    from parley.bench.scenarios import PAUSE_BETWEEN_QUESTIONS_S, _ask, turns_report
    from parley.bench.server_process import cpu_seconds
    from parley.bench.stats import summary

    python = await asyncio.to_thread(ensure_venv, settings.cache_dir)
    whisper_dir = await asyncio.to_thread(whisper_model_dir, settings.stt.model, settings.cache_dir, log.info)
    gguf = await asyncio.to_thread(llm_model_path, settings.llm.model, settings.cache_dir, log.info)
    cfg = settings.llm
    # One call, so one slot with the whole context: Pipecat's LLMContext keeps the entire conversation (Parley
    # sends at most agent.max_history_turns), and 24 questions overflow a quarter of it (seen: HTTP 400).
    llm = await EmbeddedLlm.start(
        gguf, log_dir=logs / "pipecat-llm", threads=cfg.threads, context=cfg.context, parallel=1,
        max_tokens=cfg.max_tokens, temperature=cfg.temperature,
    )
    peer: PipecatPeer | None = None
    try:
        await llm.warm_up(settings.agent.system_prompt)
        peer = await PipecatPeer.start(
            python, whisper_dir=whisper_dir, llm_url=llm.base_url, llm_model=llm.model, system_prompt=settings.agent.system_prompt,
            max_tokens=cfg.max_tokens, temperature=cfg.temperature, voice=settings.tts.voice, log_path=logs / "pipecat.log",
        )
        pids = [peer.process.pid, llm.pid]
        caller = SmallWebRTCCaller(peer.url)
        await caller.start()
        try:
            await asyncio.sleep(1.0)
            cpu_before, wall_before = sum(cpu_seconds(p) for p in pids), time.monotonic()
            results = [await _ask(caller, q, timeout) for q in questions]  # type: ignore[arg-type]
            cpu_share = (sum(cpu_seconds(p) for p in pids) - cpu_before) / (time.monotonic() - wall_before)
            turns = []
            for q in paused:
                turns.append(await _ask_paused(caller, q, 40.0))
                await asyncio.sleep(PAUSE_BETWEEN_QUESTIONS_S)
        finally:
            await caller.close()
    finally:
        if peer is not None:
            await peer.stop()
        await llm.close()
    single = turns_report(questions, results)
    single["cpu_cores_busy"] = cpu_share
    paused_report = {
        "questions": len(turns), "premature": sum(t["premature"] for t in turns), "answered": sum(t["answered"] for t in turns),
        "one_user_line": None,  # Pipecat's SmallWebRTC bot sends no transcripts to the caller
        "voice_to_voice_s": summary(t["voice_to_voice_s"] for t in turns if t["answered"] and not t["premature"]),
        "turns": turns,
    } if paused else None
    return {"single_call": single, "paused": paused_report, "pipecat_version": PIPECAT_VERSION}
