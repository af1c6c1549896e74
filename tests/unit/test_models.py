"""The real embedded models: Silero VAD, faster-whisper on real recorded speech, hibari TTS."""

from pathlib import Path

import numpy as np
import pytest

from parley.agents.weights import llm_model_path, whisper_model_dir
from parley.server.audio import resample
from parley.server.errors import ModelLoadError
from tests.support.audio import read_wav, speak_to_wav, word_error_rate

pytestmark = pytest.mark.slow
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def speech_probs(models, samples_16k: np.ndarray) -> list[float]:
    stream = models.vad.open_stream()
    usable = samples_16k[: samples_16k.size - samples_16k.size % stream.window_samples]
    return stream.probabilities(usable)


def test_vad_hears_generated_speech(models, audio_dir):
    speech, rate = read_wav(speak_to_wav("The quick brown fox jumps over the lazy dog.", audio_dir / "fox.wav"))
    probs = speech_probs(models, resample(speech, rate, 16_000))
    assert max(probs) > 0.9
    assert np.mean(np.array(probs) > 0.5) > 0.4  # most of the clip is speech


def test_vad_hears_tts_speech(models):
    speech = models.tts.synthesize("Good morning, how can I help you?")
    assert np.mean(np.array(speech_probs(models, resample(speech, models.tts.sample_rate, 16_000))) > 0.5) > 0.4


@pytest.mark.parametrize("kind", ["silence", "white noise", "hum"])
def test_vad_rejects_non_speech(models, kind):
    rng = np.random.default_rng(7)
    t = np.arange(16_000 * 3) / 16_000
    signal = {
        "silence": np.zeros(t.size, np.float32),
        "white noise": (rng.standard_normal(t.size) * 0.05).astype(np.float32),
        "hum": (0.2 * np.sin(2 * np.pi * 100 * t)).astype(np.float32),
    }[kind]
    assert max(speech_probs(models, signal)) < 0.5


def _normalise(text: str) -> str:
    return text.lower().replace("mr.", "mister").replace("mr ", "mister ")


def test_stt_on_real_recorded_speech(models):
    """Corpus WER on five LibriVox clips (Debian's pocketsphinx-testdata).

    Whisper tiny.en measured ~5 % here, including one word lost to a disfluency kept in the reference
    ("a more a amiable"). The bound of 15 % allows for decoder variation but fails on broken audio
    handling (wrong rate or channel layout gives well over 50 %).
    """
    if not LIBRIVOX.is_dir():
        pytest.fail("pocketsphinx-testdata is missing: `make test` installs it")
    references = {}
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        text, _, name = line.rpartition("(")
        references[name.strip(") ")] = text.replace("<s>", "").replace("</s>", "").strip()
    errors = words = 0
    for name, reference in references.items():
        samples, rate = read_wav(LIBRIVOX / f"{name}.wav")
        hypothesis = models.stt.transcribe(resample(samples, rate, 16_000))
        n = len(reference.split())
        errors += word_error_rate(reference, _normalise(hypothesis)) * n
        words += n
    assert errors / words <= 0.15, f"WER {errors / words:.2%}"


def test_stt_hotwords_recover_the_agents_name(models, audio_dir):
    """Group calls hinge on hearing the agent's name; tiny.en alone hears "Harley" here."""
    samples, rate = read_wav(speak_to_wav("Parley, tell me the capital of France.", audio_dir / "name.wav"))
    speech = np.concatenate([np.zeros(4000, np.float32), resample(samples, rate, 16_000)])  # like the VAD's pre-roll
    assert "parley" in models.stt.transcribe(speech, "en", hotwords="Parley").lower()


def test_stt_returns_empty_text_for_no_audio(models):
    assert models.stt.transcribe(np.zeros(0, np.float32)) == ""


def test_tts_output_is_trimmed_loud_and_intelligible(models):
    text = "The meeting starts at nine thirty in the morning."
    speech = models.tts.synthesize(text)
    rate = models.tts.sample_rate
    assert rate == 24_000 and speech.dtype == np.float32
    assert np.abs(speech[: rate // 20]).max() > 0.005  # no long silent lead-in left
    assert 1.0 < speech.size / rate < 5.0
    heard = models.stt.transcribe(resample(speech, rate, 16_000))
    assert word_error_rate(text, heard) <= 0.25, heard


def test_unknown_models_fail_with_clear_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="neither a known model"):
        llm_model_path("no-such-model", tmp_path)
    with pytest.raises(ModelLoadError, match="CTranslate2"):
        whisper_model_dir(str(tmp_path), tmp_path)
    assert llm_model_path("smollm2-135m", tmp_path).is_file()
