"""``parley serve --workers N``: N node processes on one machine that share rooms through Redis.

Every worker listens on the public port (``SO_REUSEPORT``: the kernel spreads connections over them)
and on its own port (public port + 1 + index), where joins for its rooms are redirected; each makes
its own UDP sockets for media. Without ``cluster.redis_url`` the command starts a private
``redis-server`` on loopback (no persistence) for the workers and stops it at the end. A worker that
exits unexpectedly is started again (at most ``MAX_RESTARTS`` in ``RESTART_WINDOW_S``).
"""

from __future__ import annotations

import logging
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from parley.core.errors import ConfigError
from parley.core.files import write_private
from parley.core.net import free_loopback_port
from parley.server.config import Settings

log = logging.getLogger("parley.workers")
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0


def start_local_redis(log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A private ``redis-server`` on a free loopback port, without persistence; returns it and its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ConfigError("--workers needs Redis: install redis-server (apt-get install redis-server) or set cluster.redis_url")
    port = free_loopback_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    out = open(log_dir / "redis.log", "ab")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
        stdout=out, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigError(f"redis-server exited with {process.returncode}: see {log_dir / 'redis.log'}")
        if redis_answers("127.0.0.1", port):
            return process, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    process.kill()
    raise ConfigError(f"redis-server did not answer on 127.0.0.1:{port} within 10 s")


def redis_answers(host: str, port: int) -> bool:
    """Whether a Redis server answers PING at host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class Worker:
    index: int
    settings_file: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    starts: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.starts.append(time.monotonic())
        self.process = subprocess.Popen([sys.executable, "-m", "parley.server.worker", str(self.settings_file)])

    def restarts_left(self) -> bool:
        recent = [t for t in self.starts if time.monotonic() - t < RESTART_WINDOW_S]
        return len(recent) <= MAX_RESTARTS


def worker_settings(settings: Settings, index: int, redis_url: str, token_secret: str, api_key: str) -> Settings:
    """One worker's settings: its own port and node id, the public port shared, one Redis, one secret."""
    http, cluster, auth = settings.http, settings.cluster, settings.auth
    base = http.port
    return settings.model_copy(update={
        "http": http.model_copy(update={"port": base + 1 + index}),
        "cluster": cluster.model_copy(update={
            "redis_url": redis_url, "shared_port": base, "node_id": f"{cluster.node_id or socket.gethostname()}-w{index}",
            "public_url": "",
        }),
        "auth": auth.model_copy(update={"token_secret": token_secret, "api_key": api_key}),
    })


def _wait_ready(workers: list[Worker], host: str, timeout_s: float) -> bool:
    host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    pending = {w.index for w in workers}
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        for worker in workers:
            if worker.index in pending and worker.process is not None and worker.process.poll() is not None:
                return False
            if worker.index in pending:
                try:
                    with urllib.request.urlopen(f"http://{host}:{worker.port}/healthz", timeout=1):
                        pending.discard(worker.index)
                except OSError:
                    pass
        time.sleep(0.2)
    return not pending


def run_workers(settings: Settings, count: int) -> int:
    """Start ``count`` workers and keep them running until SIGTERM/SIGINT; return the exit status."""
    if settings.http.cert or settings.http.key:
        raise ConfigError("--workers does not serve TLS itself yet: put a TLS proxy in front (see README, Deployment)")
    redis_process = None
    redis_url = settings.cluster.redis_url
    if not redis_url:
        redis_process, redis_url = start_local_redis(settings.cache_dir / "logs")
        log.info("started a private redis-server for the workers at %s", redis_url)
    workers = _workers(settings, count, redis_url)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.set())
    try:
        for worker in workers:
            worker.start()
        if _wait_ready(workers, settings.http.host, timeout_s=600):
            log.info("Parley is ready with %d workers: open http://%s:%d (workers on ports %s)", count,
                     settings.http.host, settings.http.port, ", ".join(str(w.port) for w in workers))
        return _supervise(workers, stopping)
    finally:
        _stop(workers, settings.http.shutdown_grace_s + 10)
        if redis_process is not None:
            redis_process.terminate()
            redis_process.wait(5)
        log.info("all workers stopped")


def _workers(settings: Settings, count: int, redis_url: str) -> list[Worker]:
    """The workers' settings, written to private files: one Redis, one token secret and admin key for all."""
    auth = settings.auth
    token_secret = auth.token_secret or secrets.token_urlsafe(32)
    api_key = auth.api_key
    if auth.dev_mode and not api_key:
        api_key = secrets.token_urlsafe(24)
        log.warning("dev mode: the admin API key for this run is in %s", write_private(settings.cache_dir / "dev-admin-key", api_key + "\n"))
    workers = []
    for index in range(count):
        own = worker_settings(settings, index, redis_url, token_secret, api_key)
        path = write_private(settings.cache_dir / f"worker-{index}.json", own.model_dump_json())
        workers.append(Worker(index, path, own.http.port))
    return workers


def _supervise(workers: list[Worker], stopping: threading.Event) -> int:
    """Start again each worker that exits (with a growing delay) until ``stopping``; 1 once one exits too often."""
    while not stopping.is_set():
        time.sleep(0.2)
        for worker in workers:
            assert worker.process is not None
            code = worker.process.poll()
            if code is None or stopping.is_set():
                continue
            if not worker.restarts_left():
                log.error("worker %d exited with %s too often: stopping", worker.index, code)
                return 1
            delay = min(2.0 ** (len(worker.starts) - 1) * 0.5, 10.0)
            log.warning("worker %d exited with %s: starting it again in %.1f s", worker.index, code, delay)
            time.sleep(delay)
            worker.start()
    return 0


def _stop(workers: list[Worker], grace_s: float) -> None:
    """SIGTERM to every worker still running; those not gone within ``grace_s`` are killed."""
    for worker in workers:
        if worker.process is not None and worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for worker in workers:
        if worker.process is not None:
            try:
                worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
        worker.settings_file.unlink(missing_ok=True)

