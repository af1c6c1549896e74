"""The benchmark's spoken questions: generated once (espeak-ng, else the TTS) and kept with their text."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from parley.core.audio import read_wav, resample, write_wav

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
# Questions with a thinking pause in the middle (two halves joined by silence): an agent that ends the
# turn on the pause answers half a question (a premature reply).
PAUSED_QUESTIONS = [
    ("What is the capital of", "Australia?"),
    ("Can you tell me how many", "bones are in the human body?"),
    ("I would like to know", "who invented the telephone."),
    ("How long does it take", "to boil an egg?"),
    ("What is the difference between", "a frog and a toad?"),
    ("Could you recommend", "a movie for tonight?"),
    ("Why do leaves", "change colour in autumn?"),
    ("What is the best way", "to learn a new language?"),
]
PAUSES_S = [0.6, 0.8, 1.0, 1.2]
# A barge-in over the agent's voice: a question with a long reply, and what the caller says over it.
BARGE_IN = ("Tell me a story about a dragon who learns to fly.", "Stop, what is the capital of France?")
# Mandarin: spoken by Kokoro's jm_kumo (a man's voice) — not the agent's own Mandarin voice (jf_gongitsune).
MANDARIN_QUESTIONS = [
    "中国的首都是哪个城市？", "一年有多少天？", "天空为什么是蓝色的？", "你最喜欢什么颜色？",
    "水在多少度会结冰？", "太阳系有几颗行星？", "长城有多长？", "请推荐一本好书。",
    "今天适合出去散步吗？", "熊猫吃什么？", "怎样才能睡得更好？", "上海离北京远吗？",
]
MANDARIN_VOICE = "jm_kumo"
# Mandarin questions with a thinking pause inside (each half synthesized alone, then joined by PAUSES_S):
# the first halves stop where a Mandarin speaker would pause to think, none of them a question yet.
MANDARIN_PAUSED_QUESTIONS = [
    ("请问中国的首都是", "哪个城市？"),
    ("我想知道一年一共有", "多少天。"),
    ("你能告诉我天空为什么", "是蓝色的吗？"),
    ("水在多少度的时候", "会结冰？"),
    ("请给我推荐一本", "适合在飞机上看的书。"),
    ("熊猫平时最喜欢", "吃什么东西？"),
    ("怎样才能让自己", "睡得更好？"),
    ("从上海到北京坐高铁", "要多长时间？"),
]


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


def _spoken(text: str, espeak_voice: str) -> np.ndarray:
    """``text`` spoken by espeak-ng in ``espeak_voice``, or by hibari where espeak-ng is missing."""
    return _espeak(text, espeak_voice) if shutil.which("espeak-ng") else _hibari(text, "emma")


# Real speech: a person reading sentences one after another (LibriVox, Debian's pocketsphinx-testdata),
# joined with the pauses people leave between sentences. One "question" to the agent, said in four parts.
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
MONOLOGUE_CLIPS = ["0880", "0890", "0930", "0920"]  # 3.0, 5.3, 3.3 and 6.1 s
MONOLOGUE_PAUSES_S = [0.6, 0.9]


def load_monologues(pauses: list[float] | None = None) -> list[Question]:
    """The LibriVox sentences joined by each pause (trimmed to the first and last word); [] without the clips."""
    clips = [LIBRIVOX / f"sense_and_sensibility_01_austen_64kb-{clip}.wav" for clip in MONOLOGUE_CLIPS]
    if not all(path.exists() for path in clips):
        log.warning("no LibriVox clips at %s (Debian's pocketsphinx-testdata): monologues not measured", LIBRIVOX)
        return []
    sentences = []
    for path in clips:
        samples, rate = read_wav(path)
        samples = resample(samples, rate, RATE)
        loud = np.flatnonzero(np.abs(samples) > 0.02)
        sentences.append(samples[max(0, loud[0] - RATE // 20) : loud[-1] + RATE // 20])
    out = []
    for pause in pauses or MONOLOGUE_PAUSES_S:
        gap = np.zeros(int(pause * RATE), np.float32)
        parts = [part for sentence in sentences for part in (sentence, gap)][:-1]
        out.append(Question(f"{len(sentences)} sentences read aloud, {pause:g} s between them", np.concatenate(parts)))
    return out


def _pause_s(i: int) -> float:
    """The silence inside the i-th paused question (PAUSES_S in turn)."""
    return PAUSES_S[i % len(PAUSES_S)]


def _with_pause(first: np.ndarray, second: np.ndarray, i: int) -> np.ndarray:
    """The i-th paused question: its two halves with ``_pause_s(i)`` of silence between them."""
    return np.concatenate([first, np.zeros(int(_pause_s(i) * RATE), np.float32), second])


def load_paused_questions(folder: Path, count: int | None = None) -> list[Question]:
    """The paused questions (first half, 0.6–1.2 s of silence, second half), generated into ``folder`` once."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = [f"{a} … {b}" for a, b in PAUSED_QUESTIONS]
    index_path = folder / "paused.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else []
    if [item["text"] for item in index] != texts:
        index = []
        for i, (first, second) in enumerate(PAUSED_QUESTIONS):
            voice = _VOICES[i % len(_VOICES)]
            name = f"paused{i + 1:02d}.wav"
            write_wav(folder / name, _with_pause(_spoken(first, voice), _spoken(second, voice), i), RATE)
            index.append({"file": name, "text": texts[i], "voice": voice, "pause_s": _pause_s(i)})
        index_path.write_text(json.dumps(index, indent=1))
    items = index[:count] if count else index
    return [Question(item["text"], read_wav(folder / item["file"])[0]) for item in items]


def _mandarin_set(folder: Path, cache_dir: Path, kind: str, prefix: str, texts: list[str],
                  speak: Callable[[Callable[[str], np.ndarray], int], np.ndarray], count: int | None) -> list[Question]:
    """A set of Mandarin clips (``speak(say, i)`` for the i-th text, ``say`` being Kokoro's jm_kumo at
    48 kHz), synthesized once into ``folder/zh`` as ``<prefix>NN.wav`` and indexed in ``<kind>.json``."""
    folder = folder / "zh"
    folder.mkdir(parents=True, exist_ok=True)
    index_path = folder / f"{kind}.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else []
    if [item["text"] for item in index] != texts:
        from parley.agents.tts.kokoro import KokoroTts
        from parley.agents.weights import kokoro_files

        log.info("generating %d Mandarin %s with Kokoro %s into %s", len(texts), kind, MANDARIN_VOICE, folder)
        tts = KokoroTts(*kokoro_files(cache_dir), MANDARIN_VOICE, threads=2)
        say = lambda text: resample(tts.synthesize(text), tts.sample_rate, RATE)  # noqa: E731
        index = []
        for i, text in enumerate(texts):
            name = f"{prefix}{i + 1:02d}.wav"
            write_wav(folder / name, speak(say, i), RATE)
            index.append({"file": name, "text": text, "voice": MANDARIN_VOICE, "engine": "kokoro"})
        index_path.write_text(json.dumps(index, indent=1))
    items = index[:count] if count else index
    return [Question(item["text"], read_wav(folder / item["file"])[0]) for item in items]


def load_mandarin_questions(folder: Path, cache_dir: Path, count: int | None = None) -> list[Question]:
    """The Mandarin questions, synthesized once into ``folder/zh`` with Kokoro's jm_kumo voice."""
    return _mandarin_set(folder, cache_dir, "questions", "zh", MANDARIN_QUESTIONS, lambda say, i: say(MANDARIN_QUESTIONS[i]), count)


def load_mandarin_paused_questions(folder: Path, cache_dir: Path, count: int | None = None) -> list[Question]:
    """The Mandarin paused questions: first half, 0.6–1.2 s of silence, second half (Kokoro jm_kumo)."""
    def speak(say: Callable[[str], np.ndarray], i: int) -> np.ndarray:
        first, second = MANDARIN_PAUSED_QUESTIONS[i]
        return _with_pause(say(first), say(second), i)

    texts = [f"{a} … {b}" for a, b in MANDARIN_PAUSED_QUESTIONS]
    return _mandarin_set(folder, cache_dir, "paused", "zh-paused", texts, speak, count)


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


def load_barge_in(folder: Path) -> tuple[Question, Question]:
    """``BARGE_IN``'s long-reply question and the cut-in spoken over its reply, generated into ``folder`` once."""
    folder.mkdir(parents=True, exist_ok=True)
    spoken = []
    for name, text in zip(("barge_in_ask", "barge_in_cut"), BARGE_IN):
        wav, label = folder / f"{name}.wav", folder / f"{name}.txt"
        if not (wav.exists() and label.exists() and label.read_text() == text):
            write_wav(wav, _spoken(text, "en-us"), RATE)
            label.write_text(text)
        spoken.append(Question(text, read_wav(wav)[0]))
    return spoken[0], spoken[1]
