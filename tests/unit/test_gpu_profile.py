"""The GPU profile's settings and the Fish Speech client's logic (header, body, errors).

The Fish Speech engine itself needs a GPU: here a small stand-in HTTP server answers the way its
API does (a 44-byte WAV header with zero length fields, then int16 PCM), so only the client is tested.
The real engines are exercised by the ``gpu``-marked tests, on a machine with CUDA.
"""

from __future__ import annotations

import json
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import msgpack
import numpy as np
import pytest

from parley.agents.tts.fish_speech import FishSpeechTts, pcm16_to_float, strip_wav_header
from parley.server.config import load_settings
from parley.core.errors import ConfigError, ModelLoadError


def test_gpu_profile_points_every_stage_at_a_gpu_engine():
    settings = load_settings(overrides={"profile": "gpu"}, environ={})
    assert (settings.stt.device, settings.stt.compute_type, settings.stt.model) == ("cuda", "float16", "large-v3-turbo")
    assert settings.llm.backend == "openai" and settings.llm.url.endswith("/v1")
    assert settings.llm.extra_body == {"chat_template_kwargs": {"enable_thinking": False}}  # Qwen3 on vLLM: no thinking
    assert settings.tts.backend == "fish-speech" and settings.tts.url
    assert settings.stt.batching and settings.stt.max_batch > load_settings(environ={}).stt.max_batch
    # Whisper's full window on a GPU (measured faster there), the shorter one on the CPU default
    assert (settings.stt.window_s, load_settings(environ={}).stt.window_s) == (30, 15)


def test_what_the_user_sets_wins_over_the_profile(tmp_path: Path):
    config = tmp_path / "parley.toml"
    config.write_text('profile = "gpu"\n[llm]\nurl = "http://10.0.0.5:9000/v1"\n')
    settings = load_settings(config, environ={"PARLEY_STT__MODEL": "/models/whisper-turbo"})
    assert settings.profile == "gpu" and settings.llm.url == "http://10.0.0.5:9000/v1"
    assert settings.stt.model == "/models/whisper-turbo" and settings.stt.device == "cuda"
    assert load_settings(environ={}).stt.device == "cpu"  # the default profile is the embedded one
    with pytest.raises(ConfigError, match="unknown profile"):
        load_settings(overrides={"profile": "tpu"}, environ={})


def test_wav_header_and_pcm_decoding():
    pcm = struct.pack("<4h", 0, 16384, -32768, 32767)
    header = b"RIFF" + b"\0\0\0\0" + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 44100, 88200, 2, 16) + b"data\0\0\0\0"
    assert len(header) == 44
    assert strip_wav_header(header + pcm) == pcm and strip_wav_header(pcm) == pcm
    assert np.allclose(pcm16_to_float(pcm + b"\x01"), [0.0, 0.5, -1.0, 32767 / 32768])  # odd byte dropped


class _FishStandIn(BaseHTTPRequestHandler):
    """Answers like Fish Speech's API server; remembers the last request."""

    last: dict = {}
    fail_with: int | None = None

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(200 if self.path == "/v1/health" else 404)
        self.end_headers()
        self.wfile.write(b'{"status":"ok"}')

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        kind = self.headers["Content-Type"]
        type(self).last = {"kind": kind, "body": msgpack.unpackb(body) if "msgpack" in kind else json.loads(body)}
        if self.fail_with:
            self.send_response(self.fail_with)
            self.end_headers()
            self.wfile.write(b"out of memory")
            return
        tone = (np.sin(np.arange(4410) / 44100 * 2 * np.pi * 440) * 16000).astype("<i2").tobytes()
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.end_headers()
        self.wfile.write(b"RIFF\0\0\0\0WAVEfmt " + bytes(16 + 8) + b"data\0\0\0\0")
        self.wfile.write(tone)

    def log_message(self, *args):
        pass


@pytest.fixture
def fish_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FishStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    _FishStandIn.fail_with = None


def test_fish_speech_client_streams_wav_and_clones_from_a_reference_clip(fish_url, tmp_path):
    plain = FishSpeechTts(fish_url, voice="narrator", gain_db=0.0)
    audio = plain.synthesize("Hello there.")
    assert plain.sample_rate == 44_100 and 0.09 < audio.size / 44_100 <= 0.1 and 0.4 < np.abs(audio).max() < 0.6
    assert _FishStandIn.last["kind"] == "application/json"
    assert _FishStandIn.last["body"]["reference_id"] == "narrator" and _FishStandIn.last["body"]["streaming"] is True
    clip = tmp_path / "me.wav"
    clip.write_bytes(b"RIFF-my-voice")
    cloned = FishSpeechTts(fish_url, reference_audio=str(clip), reference_text="This is my voice.")
    cloned.synthesize("Hi.")
    assert _FishStandIn.last["kind"] == "application/msgpack"
    assert _FishStandIn.last["body"]["references"] == [{"audio": b"RIFF-my-voice", "text": "This is my voice."}]
    assert "reference_id" not in _FishStandIn.last["body"]


def test_fish_speech_errors_are_clear(fish_url, tmp_path):
    with pytest.raises(ModelLoadError, match="needs tts.url"):
        FishSpeechTts("")
    with pytest.raises(ModelLoadError, match="not reachable"):
        FishSpeechTts("http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(ModelLoadError, match="reference clip"):
        FishSpeechTts(fish_url, reference_audio=str(tmp_path / "missing.wav"))
    _FishStandIn.fail_with = 500
    with pytest.raises(RuntimeError, match="HTTP 500: out of memory"):
        FishSpeechTts(fish_url).synthesize("Hello.")
