"""The benchmark's spoken questions: generated once (espeak-ng, else the TTS) and kept with their text."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from parley.server.audio import read_wav, resample, write_wav

log = logging.getLogger(__name__)
RATE = 48_000

QUESTIONS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Who wrote Romeo and Juliet?",
    "What is the boiling point of water in Celsius?",
    "What is the largest planet in our solar system?",
    "Can you recommend a good book for a long flight?",
    "How do I make a good cup of tea?",
    "What is two plus two?",
    "Tell me a fun fact about cats.",
    "What is the tallest mountain in the world?",
    "Which ocean is the biggest?",
    "What language do people speak in Brazil?",
    "How far away is the moon?",
    "What is photosynthesis?",
    "Give me one tip for sleeping better.",
    "Who painted the Mona Lisa?",
    "What is a good name for a dog?",
    "How many continents are there?",
    "Why is the ocean salty?",
    "What should I cook for dinner tonight?",
    "How many minutes are in an hour?",
    "What is the weather usually like in London?",
    "Which animal is the fastest on land?",
    "How do bees make honey?",
]
_VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb+m3"]


@dataclass(frozen=True)
class Question:
    text: str
    samples: np.ndarray  # 48 kHz mono float32

    @property
    def duration_s(self) -> float:
        return self.samples.size / RATE


def _espeak(text: str, voice: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "q.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "165", "-w", str(path), text], check=True)
        samples, rate = read_wav(path)
    return resample(samples, rate, RATE)


def _hibari(text: str, voice: str) -> np.ndarray:
    from parley.agents.tts.hibari import HibariTts

    tts = HibariTts(voice)
    return resample(tts.synthesize(text), tts.sample_rate, RATE)


def load_questions(folder: Path, count: int | None = None) -> list[Question]:
    """Return the questions, generating their WAVs into ``folder`` the first time."""
    folder.mkdir(parents=True, exist_ok=True)
    index_path = folder / "questions.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else []
    if [item["text"] for item in index] != QUESTIONS:
        engine = "espeak-ng" if shutil.which("espeak-ng") else "hibari"
        log.info("generating %d spoken questions with %s into %s", len(QUESTIONS), engine, folder)
        index = []
        for i, text in enumerate(QUESTIONS):
            voice = _VOICES[i % len(_VOICES)] if engine == "espeak-ng" else ["emma", "fenrir", "kore"][i % 3]
            samples = _espeak(text, voice) if engine == "espeak-ng" else _hibari(text, voice)
            name = f"q{i + 1:02d}.wav"
            write_wav(folder / name, samples, RATE)
            index.append({"file": name, "text": text, "voice": voice, "engine": engine})
        index_path.write_text(json.dumps(index, indent=1))
    items = index[:count] if count else index
    return [Question(item["text"], read_wav(folder / item["file"])[0]) for item in items]
