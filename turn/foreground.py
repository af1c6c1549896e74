"""``parley turn``: coturn as a child that lives and dies with it.

Stop signals (SIGTERM, SIGINT) and SIGHUP (coturn reopens its log file) are passed on to coturn, and
``parley turn`` exits when coturn does: 0 after a stop it passed on, otherwise non-zero, with
coturn's last log lines. On Linux coturn is also told to stop if ``parley turn`` itself is killed
(SIGKILL), so supervisors that signal only their own child never leave a turnserver behind.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType

from parley.turn.coturn import command, write_config
from parley.turn.settings import TurnSettings

log = logging.getLogger(__name__)
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STOPS = (signal.SIGTERM, signal.SIGINT)
LAST_LINES = 20
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: signals are still forwarded


def _tail(path: Path, lines: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def run_foreground(turn: TurnSettings, config: Path) -> int:
    """Write coturn's config, run it, pass signals on, and return the exit status ``parley turn`` should have."""
    write_config(turn, config, log_file=turn.log_file, pid_file=str(config.with_suffix(".pid")))
    to_stdout = turn.log_file == "stdout"
    process = subprocess.Popen(
        command(config), preexec_fn=_die_with_parent, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if to_stdout else None, stderr=subprocess.STDOUT if to_stdout else None, text=to_stdout,
    )
    recent: collections.deque[str] = collections.deque(maxlen=LAST_LINES)
    relay = None
    if to_stdout:
        def pump() -> None:  # coturn's log, relayed line by line (and the last lines kept)
            assert process.stdout is not None
            for line in process.stdout:
                recent.append(line.rstrip("\n"))
                sys.stdout.write(line)
                sys.stdout.flush()

        relay = threading.Thread(target=pump, name="coturn-log", daemon=True)
        relay.start()
    stopping: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        if signum in STOPS:
            stopping.append(signum)
        if process.poll() is None:
            process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        status = process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if relay is not None:
            relay.join(timeout=2)
    if stopping and status in (0, -stopping[0]):
        log.info("coturn stopped (%s)", signal.Signals(stopping[0]).name)
        return 0
    lines = list(recent) if to_stdout else _tail(Path(turn.log_file), LAST_LINES)
    how = f"was killed by {signal.Signals(-status).name}" if status < 0 else f"exited with status {status}"
    log.error("coturn %s; its last log lines:\n%s", how, "\n".join(lines) or "(none)")
    return 128 - status if status < 0 else (status or 1)
