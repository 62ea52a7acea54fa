"""What a worker process's steps are handed: its clients, its limiter, its policy.

Built once per process by the composition root (`genqueue.bootstrap.Root.worker_context`), in
Celery's `worker_process_init` for prefork children (connections must be made after the fork) and in
`worker_init` for the threads and solo pools; tests build one the same way with fakes in the root.
"""

from __future__ import annotations

import atexit
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from cryptography.fernet import MultiFernet
from sqlalchemy.orm import Session, sessionmaker

from genqueue.core.settings import Settings
from genqueue.sched.ready import ReadyQueues
from genqueue.worker import metrics
from genqueue.worker.budget import kind_of, parse_seen
from genqueue.worker.clock import DatabaseClock
from genqueue.worker.durations import Durations
from genqueue.worker.lifecycle.policy import FollowStrategy, Paged, Policy, Webhooks
from genqueue.worker.ratelimit import CircuitBreaker, RateLimiter
from genqueue.worker.replicate import RateLimitHeaders, ReplicateClient, make_http_client
from genqueue.worker.transport import CookielessClient, make_transport

if TYPE_CHECKING:
    from collections.abc import Callable

    import redis

    from genqueue.storage import Storage

REPLICATE_TIMEOUT = 30.0  # seconds a Replicate call may take to answer (Prefer: wait adds its own)
# Prefer: wait for models observed to finish within this many seconds, on threads-pool workers only:
# the create then returns the finished prediction (no poll at all), holding a thread meanwhile.
THREADS_CREATE_WAIT = 5.0


class StepSender(Protocol):
    """The part of `genqueue.worker.enqueue.Enqueuer` steps use (tests record instead of sending)."""

    def send(self, task: str, args: list[Any], countdown: float = 0.0, **options: Any) -> None: ...

    def submit(self, job_ids: list[str]) -> None: ...


class WorkerParts(Protocol):
    """What the context is built from (`genqueue.bootstrap.Root`)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def sessions(self) -> sessionmaker[Session]: ...
    @property
    def storage(self) -> Storage: ...
    @property
    def redis(self) -> redis.Redis: ...
    @property
    def cipher(self) -> MultiFernet: ...
    @property
    def enqueuer(self) -> StepSender: ...
    @property
    def ready(self) -> ReadyQueues: ...


@dataclass
class WorkerContext:
    settings: Settings
    policy: Policy
    sessions: sessionmaker[Session]
    replicate: ReplicateClient
    downloads: httpx.Client
    storage: Storage
    limiter: RateLimiter
    breaker: CircuitBreaker
    enqueuer: StepSender
    recorder: metrics.Recorder
    durations: Durations
    cipher: MultiFernet
    redis: redis.Redis
    clock: DatabaseClock  # now, by the database's clock (worker.clock): what every step stamps
    ready: ReadyQueues  # queued jobs' lanes (sched.ready): the submit step puts back and releases
    worker_id: str | None = None  # this worker's heartbeat id (worker.heartbeat), recorded with its claims
    # Callback POSTs (worker.services.callbacks): a pool of its own, no cookies, no redirects followed.
    callback_http: httpx.Client = field(default_factory=lambda: _callback_client())


def _callback_client() -> httpx.Client:
    return CookielessClient(timeout=httpx.Timeout(10.0, connect=5.0), follow_redirects=False,
                            transport=make_transport())


def follow_strategy(settings: Settings) -> FollowStrategy:
    """Webhooks when Replicate can reach our API (GENQUEUE_WEBHOOK_URL), else list pages read by the
    page reader (worker.pages) with polls as its safety net."""
    return Webhooks(settings.webhook_url) if settings.webhook_url else Paged()


def make_policy(settings: Settings, *, threads: bool = False) -> Policy:
    create_wait = THREADS_CREATE_WAIT if threads else 0.0
    return Policy(follow=follow_strategy(settings), create_wait_max=create_wait,
                  create_window=timedelta(seconds=REPLICATE_TIMEOUT + create_wait + 2 + 15))


def budget_learner(limiter: RateLimiter) -> Callable[[RateLimitHeaders], None]:
    """The client hook by which every Replicate answer teaches the fleet's limiter (worker.budget)."""
    def learn_budget(headers: RateLimitHeaders) -> None:
        limiter.observe(kind_of(headers.endpoint), parse_seen(headers.status, headers.remaining, headers.reset))
    return learn_budget


def build_context(parts: WorkerParts, *, threads: bool = False, worker_id: str | None = None) -> WorkerContext:
    settings = parts.settings
    recorder = metrics.Recorder(parts.redis)
    atexit.register(recorder.flush)  # a clean exit writes the last second of counts
    limiter = RateLimiter(parts.redis, create_per_min=settings.create_rate_per_min,
                          read_per_min=settings.read_rate_per_min)

    http = make_http_client(base_url=settings.replicate_base_url, token=settings.token(), timeout=REPLICATE_TIMEOUT,
                            transport=make_transport())
    return WorkerContext(
        settings=settings,
        policy=make_policy(settings, threads=threads),
        sessions=parts.sessions,
        replicate=ReplicateClient(http, settings.replicate_base_url, on_response=recorder.replicate_response,
                                  on_rate_headers=budget_learner(limiter)),
        downloads=CookielessClient(timeout=httpx.Timeout(60.0, connect=5.0), follow_redirects=False,
                                   transport=make_transport()),
        storage=parts.storage,
        limiter=limiter,
        breaker=CircuitBreaker(parts.redis),
        enqueuer=parts.enqueuer,
        recorder=recorder,
        durations=Durations(parts.redis),
        cipher=parts.cipher,
        redis=parts.redis,
        clock=DatabaseClock(parts.sessions),
        ready=parts.ready,
        worker_id=worker_id,
    )
