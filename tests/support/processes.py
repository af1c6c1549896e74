"""Stopping the daemons tests start (coturn, llama_cpp.server)."""

from __future__ import annotations

import subprocess


def stop_process(process: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM, then SIGKILL if it is still running after ``grace_s``; nothing if it already exited."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
