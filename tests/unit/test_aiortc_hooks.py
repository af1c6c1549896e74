"""aiortc/aioice internals are touched in one module, checked before use."""

from __future__ import annotations

import re
from pathlib import Path

import aioice.ice
import pytest

from parley.core import aiortc_hooks

ROOT = Path(__file__).resolve().parents[2]
PRIVATE = re.compile(r"_RTCRtpReceiver__|\._nominated\b|\._query_consent_task\b|aioice\.ice\.\w+\s*=|rtcrtpreceiver\.JitterBuffer\s*=|\._connection\b")


def test_the_installed_versions_pass_the_check():
    aiortc_hooks.check()  # raises LibraryMismatchError when an internal moved
    assert aiortc_hooks.versions().startswith("aiortc 1.16")


def test_a_moved_internal_stops_with_the_versions_named(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delattr(aioice.ice.Connection, "connect")
    monkeypatch.setattr(aiortc_hooks, "_original_connect", None)
    with pytest.raises(aiortc_hooks.LibraryMismatchError, match=r"aiortc 1\.16\.\d+, aioice 0\.13\.\d+.*connect"):
        aiortc_hooks.install()


def test_no_other_module_touches_the_internals():
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for package in ("core", "agents", "turn", "signaling", "server", "bench", "examples", "tests")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "aiortc_hooks.py" and "node_modules" not in path.parts and path.name != Path(__file__).name
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert not offenders, "\n".join(offenders)
