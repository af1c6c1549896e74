"""The JS SDK's typed surface: parley.d.ts declares exactly what parley.js exports, and TypeScript
accepts the documented usage (tests/sdk/usage.ts, which also checks that misuse is rejected)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TSC = ROOT / "tests" / "e2e" / "node_modules" / ".bin" / "tsc"


def _names(pattern: str, text: str) -> set[str]:
    return set(re.findall(pattern, text, flags=re.MULTILINE))


def test_every_export_is_typed_and_every_type_is_exported():
    js = (ROOT / "web" / "parley.js").read_text()
    dts = (ROOT / "web" / "parley.d.ts").read_text()
    exported = _names(r"^export (?:async )?(?:function|class|const) (\w+)", js)
    declared = _names(r"^export declare (?:function|class|const) (\w+)", dts)
    assert exported == declared
    assert {"connect", "ParleyClient"} <= exported


def test_every_export_has_jsdoc():
    js = (ROOT / "web" / "parley.js").read_text()
    for match in re.finditer(r"^export (?:async )?(?:function|class|const) (\w+)", js, flags=re.MULTILINE):
        before = js[: match.start()].rstrip()
        assert before.endswith("*/"), f"{match.group(1)} has no JSDoc comment"


def test_typescript_accepts_the_documented_usage():
    if shutil.which("node") is None or not TSC.exists():
        pytest.fail("node and tests/e2e/node_modules (typescript) are missing: `make test` installs them")
    result = subprocess.run([str(TSC), "-p", str(ROOT / "tests" / "sdk" / "tsconfig.json")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
