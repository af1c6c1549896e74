"""Fish Speech (GPU) as a TTS backend: its HTTP API server, one request per sentence, streamed WAV.

Fish Speech runs as a separate process (its pins clash with ours; see MODELS.md). Its weights are
CC-BY-NC-SA-4.0 / Fish Audio Research License: no commercial use without a licence from Fish Audio.
``streaming: true`` answers a 44-byte WAV header whose length fields are zero, then raw int16 mono
PCM; we skip the header ourselves. A reference clip (voice cloning) travels as msgpack bytes;
a voice stored on the Fish server is picked by ``reference_id`` (Parley's ``tts.voice``).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from parley.agents.tts.base import apply_gain, trim_silence
from parley.core.errors import ModelLoadError

WAV_HEADER_BYTES = 44
DEFAULT_VOICE = "default"


def pcm16_to_float(body: bytes) -> np.ndarray:
    """int16 little-endian mono PCM → float32 in [-1, 1]; an odd trailing byte is dropped."""
    usable = len(body) - len(body) % 2
    return np.frombuffer(body[:usable], dtype="<i2").astype(np.float32) / 32768.0


def strip_wav_header(body: bytes) -> bytes:
    """Drop the RIFF header Fish Speech sends ahead of streamed PCM (or of a whole WAV file)."""
    if body[:4] == b"RIFF" and body[8:12] == b"WAVE":
        data_at = body.find(b"data", 12)
        return body[data_at + 8:] if data_at >= 0 else body[WAV_HEADER_BYTES:]
    return body


class FishSpeechTts:
    """A client of a Fish Speech API server (``POST /v1/tts``); blocking, called from an executor."""

    name = "fish-speech"

    def __init__(
        self,
        url: str,
        *,
        voice: str = DEFAULT_VOICE,
        reference_audio: str = "",
        reference_text: str = "",
        sample_rate: int = 44_100,
        gain_db: float = 0.0,
        timeout_s: float = 30.0,
        api_key: str = "",
        check: bool = True,
    ) -> None:
        if not url:
            raise ModelLoadError("tts.backend = 'fish-speech' needs tts.url (e.g. http://127.0.0.1:8081)")
        self.url = url.rstrip("/")
        self.sample_rate = sample_rate
        self._voice = voice if voice and voice != DEFAULT_VOICE else ""
        self._gain_db = gain_db
        self._timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._references: list[dict[str, object]] = []
        if reference_audio:
            try:
                clip = Path(reference_audio).expanduser().read_bytes()
            except OSError as exc:
                raise ModelLoadError(f"Fish Speech reference clip {reference_audio}: {exc}") from exc
            self._references = [{"audio": clip, "text": reference_text}]
        if check:
            self._check_health()

    def _check_health(self) -> None:
        request = urllib.request.Request(f"{self.url}/v1/health", headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=min(5.0, self._timeout_s)) as resp:
                resp.read()
        except (urllib.error.URLError, OSError) as exc:
            raise ModelLoadError(f"Fish Speech server {self.url} is not reachable: {exc}") from exc

    def request_body(self, text: str) -> tuple[bytes, str]:
        """The encoded ``/v1/tts`` request and its content type (msgpack when a clip travels with it)."""
        body: dict[str, object] = {
            "text": text, "format": "wav", "streaming": True, "normalize": True, "chunk_length": 200,
            "references": self._references,
        }
        if self._voice:
            body["reference_id"] = self._voice
        if self._references:
            import msgpack

            return msgpack.packb(body, use_bin_type=True), "application/msgpack"
        return json.dumps(body).encode(), "application/json"

    def synthesize(self, text: str) -> np.ndarray:
        payload, content_type = self.request_body(text)
        request = urllib.request.Request(
            f"{self.url}/v1/tts", data=payload, method="POST", headers={**self._headers, "Content-Type": content_type}
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode("utf-8", "replace")
            raise RuntimeError(f"Fish Speech answered HTTP {exc.code}: {detail}") from exc
        samples = pcm16_to_float(strip_wav_header(body))
        return apply_gain(trim_silence(samples, self.sample_rate), self._gain_db)
