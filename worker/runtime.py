"""Per-process resources of a worker, built on first use after the fork and handed to services.

Celery forks its pool processes; connections (SQL pool, httpx, Redis) must be created in the child,
so they are built lazily by the first task a process runs, from the settings the CLI configured.
"""

from __future__ import annotations

import atexit
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import redis
from cryptography.fernet import MultiFernet
from sqlalchemy.orm import Session, sessionmaker

from genqueue.core.crypto import load_cipher
from genqueue.core.settings import Settings
from genqueue.models.db import make_engine, make_session_factory
from genqueue.worker import metrics
from genqueue.worker.durations import Durations
from genqueue.worker.enqueue import Enqueuer
from genqueue.worker.ratelimit import CircuitBreaker, RateLimiter
from genqueue.worker.replicate import ReplicateClient, make_http_client
from genqueue.worker.stdlib_http import StdlibTransport
from genqueue.worker.transport import CookielessClient

if TYPE_CHECKING:
    from genqueue.storage import Storage


@dataclass
class WorkerContext:
    settings: Settings
    sessions: sessionmaker[Session]
    replicate: ReplicateClient
    downloads: httpx.Client
    storage: Storage
    limiter: RateLimiter
    breaker: CircuitBreaker
    enqueuer: Enqueuer
    recorder: metrics.Recorder
    durations: Durations
    cipher: MultiFernet
    redis: redis.Redis


_settings: Settings | None = None
_app: Any = None
_ctx: WorkerContext | None = None
_pid: int | None = None
_lock = threading.Lock()


def configure(settings: Settings, app: Any) -> None:
    global _settings, _app, _ctx
    _settings, _app, _ctx = settings, app, None


def build_context(settings: Settings, app: Any) -> WorkerContext:
    from genqueue.storage import make_storage

    rclient = redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
    recorder = metrics.Recorder(rclient)
    atexit.register(recorder.flush)  # a clean exit writes the last second of counts
    http = make_http_client(
        base_url=settings.replicate_base_url,
        token=settings.token(),
        timeout=settings.replicate_timeout,
        transport=StdlibTransport(),
    )
    storage = make_storage(
        settings.effective_storage_url,
        s3_endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=(
            settings.aws_secret_access_key.get_secret_value() if settings.aws_secret_access_key else None
        ),
        aws_region=settings.aws_region,
    )
    return WorkerContext(
        settings=settings,
        # A fixed set of connections, no overflow: a thread finding them all busy waits (steps hold a
        # session for a few ms, never across an HTTP call, and never two at once). Overflow connections
        # are closed on return, so W1's bursts reconnected all the time (~5% of the worker's CPU, plus
        # PostgreSQL forking backends), and a pool as large as the threads made 2 x 64 connections:
        # over PostgreSQL's default max_connections of 100, so steps failed with "too many clients".
        sessions=make_session_factory(make_engine(settings.effective_database_url, pool_size=settings.db_pool_size,
                                                  max_overflow=0, pre_ping=False)),
        replicate=ReplicateClient(http, settings.replicate_base_url, on_response=recorder.replicate_response),
        downloads=CookielessClient(timeout=httpx.Timeout(60.0, connect=5.0), follow_redirects=False,
                                   transport=StdlibTransport()),
        storage=storage,
        limiter=RateLimiter(rclient, create_per_min=settings.create_rate_per_min,
                            read_per_min=settings.read_rate_per_min),
        breaker=CircuitBreaker(rclient),
        enqueuer=Enqueuer(app),
        recorder=recorder,
        durations=Durations(rclient),
        cipher=load_cipher(
            settings.secrets_key.get_secret_value() if settings.secrets_key else None, settings.data_dir
        ),
        redis=rclient,
    )


def get() -> WorkerContext:
    global _ctx, _pid
    ctx = _ctx
    if ctx is not None and _pid == os.getpid():
        return ctx
    with _lock:  # the threads pool: build once per process
        if _ctx is None or _pid != os.getpid():
            if _settings is None:
                raise RuntimeError("worker.runtime.configure() was not called")
            _ctx, _pid = build_context(_settings, _app), os.getpid()
        return _ctx
