"""Fixtures of the end-to-end tests.

`redis_url` is overridden here: the shared fixture hands out DB indexes 8..15 of the machine's Redis
and flushes them, so two pytest sessions running at once wipe each other's queued Celery messages
(a delayed poll vanishes and a job stays `running`). End-to-end runs are long enough for that to
happen, so they get a private redis-server of their own (one per session, a fresh DB index per test).
"""

from __future__ import annotations

import itertools
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cli.embedded_redis import answers, server_binary
from cli.stack import free_port


@pytest.fixture(scope="session")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder: Path = tmp_path_factory.mktemp("redis")
    port = free_port()
    url = f"redis://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", "",
         "--appendonly", "no", "--databases", "16", "--logfile", str(folder / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not answers(f"{url}/0", 0.5):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"private redis-server did not start (see {folder}/redis.log)")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


_dbs = itertools.cycle(range(1, 16))


@pytest.fixture
def redis_url(private_redis: str) -> Iterator[str]:
    """A DB index of this test's own on the session's private Redis, flushed before and after."""
    url = f"{private_redis}/{next(_dbs)}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()
