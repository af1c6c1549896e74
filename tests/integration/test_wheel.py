"""A wheel built from the repository serves the page and the JS SDK when installed (not editable)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback only)
        return response.status, response.read()


def _source_copy(target: Path) -> Path:
    """What the wheel is built from (setuptools writes build/ next to it: not into the checkout)."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, target / name)
    for package in ("core", "agents", "turn", "signaling", "server", "bench", "web"):
        shutil.copytree(ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__", "results", "node_modules"))
    return target


def test_the_installed_wheel_serves_the_page_and_the_sdk(tmp_path: Path):
    source = _source_copy(tmp_path / "src" if (tmp_path / "src").mkdir() is None else tmp_path)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
        check=True, timeout=300,
    )
    [wheel] = (tmp_path / "dist").glob("parley-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"parley/web/index.html", "parley/web/parley.js", "parley/web/parley.d.ts"} <= names, sorted(names)[:20]

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, timeout=300)
    # Parley's dependencies come from the test virtualenv (a path entry: its .pth files, such as the
    # editable install's, are not run), so nothing is downloaded and Parley itself is only the wheel's.
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "parley-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.run(
        [str(python), "-c", "import parley.signaling.app as a; print(a.__file__); print(a.web_dir())"],
        check=True, capture_output=True, text=True, cwd=tmp_path,
    ).stdout.split()
    assert all(path.startswith(str(venv)) for path in where), where

    port = free_port()
    env = {**os.environ, "PARLEY_AGENT__MODE": "echo", "PARLEY_CONFIG": ""}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([str(venv / "bin" / "parley"), "serve", "--port", str(port)], cwd=tmp_path, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, page = _get(f"http://127.0.0.1:{port}/")
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.3)
        assert status == 200 and page == (ROOT / "web" / "index.html").read_bytes()
        status, sdk = _get(f"http://127.0.0.1:{port}/web/parley.js")
        assert status == 200 and sdk == (ROOT / "web" / "parley.js").read_bytes()
    finally:
        server.terminate()
        server.wait(timeout=20)
