"""The server runs numpy's BLAS on one thread: its spinning pool would take the cores the models need."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_THREADS_AFTER_NUMPY = (
    "import {first}, numpy, os; numpy.ones((64, 64)) @ numpy.ones((64, 64)); "
    "print(len(os.listdir('/proc/self/task')))"
)


def _threads(first: str) -> int:
    """OS threads of a fresh interpreter that imported ``first``, then numpy, and multiplied two matrices."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", _THREADS_AFTER_NUMPY.format(first=first)],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )
    return int(out.stdout.strip())


@pytest.mark.skipif((os.cpu_count() or 1) < 2 or not os.path.isdir("/proc/self/task"), reason="needs 2+ cores and /proc")
def test_importing_the_server_leaves_numpy_one_blas_thread() -> None:
    assert _threads("json") >= 2  # numpy alone starts a BLAS thread per core (what the server must avoid)
    assert _threads("parley.server") == 1


def test_an_explicit_setting_wins() -> None:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}
    out = subprocess.run(
        [sys.executable, "-c", "import parley.server, os; print(os.environ['OPENBLAS_NUM_THREADS'])"],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )
    assert out.stdout.strip() == "2"
