"""The dispatcher: hands out the create budget, one queued job per token, in `sched.plan` order.

Why a dispatcher and not budget checks inside the submit task: a task that runs only to learn that
no token is free must be re-sent and taken again (1,000 jobs under a 10x backlog cost 11,400 submit
executions and 58 ms of worker CPU each). Here a job's submit message is sent only once a create
token is taken for it, so each job's submit runs once, and a waiting job costs nothing: it is a
member of a Redis sorted set (`sched.ready`) until its turn. The order (priority, aging, fair shares,
per-key `max_running`) is decided in one place that sees every lane, which a set of per-priority
Celery queues could not do.

One dispatcher runs at a time: a thread in every worker's main process competes for a Redis lease
(`worker.lease`, 3 s, renewed every loop); when the holder dies, another worker takes over within
the lease + 1 s. Two holders at once (a paused process waking after its lease passed) are harmless:
`ReadyQueues.take` moves a job out of its lane atomically, so each job is taken once, and the
submit step's committed claim would stop a second create anyway.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import redis

from genqueue.models.db import make_engine, make_session_factory
from genqueue.models.schedule import KeyLimits, capped_keys, holding_counts, key_limits, queued_jobs
from genqueue.sched.plan import Fairness, KeyRule, plan
from genqueue.sched.ready import Entry, ReadyQueues, entry
from genqueue.worker.background import Background
from genqueue.worker.enqueue import QUEUE, SUBMIT
from genqueue.worker.lease import Lease
from genqueue.worker.ratelimit import CircuitBreaker, RateLimiter

if TYPE_CHECKING:
    from celery import Celery
    from sqlalchemy.orm import Session, sessionmaker

    from genqueue.core.settings import Settings

log = logging.getLogger(__name__)

PLAN_AHEAD = 4  # picks per plan: re-planned at least this often, so a new urgent job waits <= 4 dispatches
# Submit messages allowed to wait in the `genqueue` list. More would mean workers are behind, and the
# tokens taken for them would turn into a burst of creates at Replicate (429s) when workers catch up.
MAX_WAITING = 32
STALE_AFTER = 30.0  # an in-flight entry unreleased this long, with no submit waiting, is checked in SQL
STALE_ANYWAY = 120.0  # ... and checked even with submits waiting
RULES_EVERY = 5.0  # seconds between reads of key weights and limits
HOUSEKEEPING_EVERY = 2.0
STATS_KEY = "gq:sched:stats"
LEADER_KEY = "gq:sched:leader"


class Dispatcher(Background):
    name = "genqueue-dispatcher"
    what = "dispatcher"

    def __init__(self, settings: Settings, app: Celery, worker_id: str) -> None:
        super().__init__(worker_id)
        self._settings = settings
        self._app = app

    def open(self, resources: ExitStack) -> Callable[[], float]:
        client = redis.Redis.from_url(self._settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
        resources.callback(client.close)
        # A connection per query, none kept: the main process may fork pool children later.
        engine = make_engine(self._settings.effective_database_url, no_pool=True)
        resources.callback(engine.dispose)
        loop = Loop(self._settings, client, make_session_factory(engine), self._send, self.worker_id)
        resources.callback(loop.resign)  # on a clean stop, hand the lease over at once
        return loop.step

    def _send(self, job_id: str) -> None:
        from genqueue.worker.enqueue import Enqueuer

        # The second argument says the create token is taken (worker.services.submit).
        Enqueuer(self._app).send(SUBMIT, [job_id, True])


class Loop:
    """One dispatcher's state and its step; the thread around it is `Dispatcher`."""

    def __init__(self, settings: Settings, client: redis.Redis, sessions: sessionmaker[Session],
                 send: object, me: str, clock: Callable[[], float] = time.time) -> None:
        self._redis = client
        # Only the spend caps' windows read it (a test moves it past midnight); lanes and leases keep
        # their own time.
        self._clock = clock
        self._prices = settings.prices()
        self._held: set[str] = set()
        self._sessions = sessions
        self._send = send
        self._me = me
        self.ready = ReadyQueues(client)
        self.limiter = RateLimiter(client, create_per_min=settings.create_rate_per_min,
                                   read_per_min=settings.read_rate_per_min)
        self.breaker = CircuitBreaker(client)
        self._aging = settings.priority_aging
        self._lease = Lease(client, LEADER_KEY, me, "dispatcher")
        self.fairness = Fairness()
        self._rules: dict[str, KeyLimits] = {}
        self._rules_at = 0.0
        self._housekeeping_at = 0.0
        self._sent: deque[float] = deque()

    def leads(self) -> bool:
        was = self._lease.held
        if self._lease.renew() != was:
            self.fairness = Fairness()  # a new holder starts the shares afresh
        return self._lease.held

    def resign(self) -> None:
        self._lease.resign()

    def step(self) -> float:
        """Dispatch what the budget allows now; returns seconds to pause before the next step."""
        if not self.leads():
            return 1.0
        now = time.time()
        if now - self._housekeeping_at >= HOUSEKEEPING_EVERY:
            self._housekeeping_at = now
            self.housekeeping(now)
        if int(self._redis.llen(QUEUE)) >= MAX_WAITING:
            return 0.05
        lanes = self.ready.lanes(PLAN_AHEAD)
        if not lanes:
            self.ready.wait_for_work(1.0)
            return 0.0
        rules = self.rules(now)
        limited = sorted({ln.key for ln in lanes if ln.key in rules and rules[ln.key].max_running is not None})
        active = self.active(limited)
        picks = plan(lanes, PLAN_AHEAD, now, rules={k: KeyRule(v.weight, v.max_running, k in self._held)
                                                    for k, v in rules.items()},
                     active=active, fairness=self.fairness, aging=self._aging)
        if not picks:
            return 0.1  # every key with work is at its max_running or its spend cap
        for pick in picks:
            wait = self.limiter.acquire("create", also_blocked_by=(self.breaker.open_key,))
            if wait > 0:
                return min(wait, 1.0)  # re-plan after the wait: a more urgent job may have come
            if self.ready.take([pick]):
                self._send(pick.job_id)  # type: ignore[operator]
                self.fairness.charge(pick.lane.key, rules[pick.lane.key].weight if pick.lane.key in rules else 1)
                self._sent.append(time.time())
        return 0.0

    def rules(self, now: float) -> dict[str, KeyLimits]:
        if now - self._rules_at >= RULES_EVERY:
            with self._sessions() as session:
                self._rules = key_limits(session)
                # Spend caps: read with the limits, so a key is held (or released when its window
                # resets, or its cap is raised) within RULES_EVERY.
                at = datetime.fromtimestamp(self._clock(), UTC)
                held = capped_keys(session, self._rules, self._prices, at)
            if held != self._held:
                log.info("dispatcher: keys held at their spend cap: %s", sorted(held) or "none")
            self._held = held
            self._rules_at = now
        return self._rules

    def active(self, keys: list[str]) -> dict[str, int]:
        """Predictions held by each limited key: dispatched (in flight) plus claimed in SQL. In-flight
        is read first: a job released in between was claimed before, so it is counted in SQL."""
        if not keys:
            return {}
        inflight = self.ready.inflight_by_key()
        with self._sessions() as session:
            held = holding_counts(session, keys)
        return {k: held.get(k, 0) + inflight.get(k, 0) for k in keys}

    # --- recovery and figures ---------------------------------------------------------------------------
    def housekeeping(self, now: float) -> None:
        if not self.ready.has_epoch():
            self.rebuild()
        self.recover_stale(now)
        self.publish_stats(now)

    def rebuild(self) -> int:
        """Redis lost the lanes (FLUSHDB, a restart without persistence): every queued job goes back
        into its lane from SQL, then the epoch key marks the lanes whole again."""
        added = 0
        batch: list[Entry] = []
        with self._sessions() as session:
            for q in queued_jobs(session):
                batch.append(entry(q.id, q.priority, q.api_key_id, q.created_at.timestamp()))
                if len(batch) >= 1000:
                    added += self.ready.requeue(batch)
                    batch = []
        added += self.ready.requeue(batch)
        self.ready.set_epoch()
        if added:
            log.warning("dispatcher rebuilt the lanes from SQL: %d queued jobs put back", added)
        return added

    def recover_stale(self, now: float) -> int:
        """Dispatched jobs whose submit never released them (a worker died holding the message, the
        message was lost): those still queued in SQL go back to their lanes."""
        older = STALE_AFTER if int(self._redis.llen(QUEUE)) == 0 else STALE_ANYWAY
        stale = self.ready.stale(older, now)
        if not stale:
            return 0
        self.ready.forget(stale)
        with self._sessions() as session:
            back = [entry(q.id, q.priority, q.api_key_id, q.created_at.timestamp())
                    for q in queued_jobs(session, [job_id for _, job_id in stale])]
        added = self.ready.requeue(back)
        log.warning("dispatcher: %d dispatched jobs were never claimed; %d put back in their lanes", len(stale), added)
        return added

    def dispatch_rate(self, now: float, window: float = 30.0) -> float:
        while self._sent and self._sent[0] < now - window:
            self._sent.popleft()
        return len(self._sent) / window

    def publish_stats(self, now: float) -> None:
        """What the API shows (queue position estimates, /v1/stats): this dispatcher's recent rate."""
        rate = self.dispatch_rate(now)
        self._redis.hset(STATS_KEY, mapping={"rate_per_s": f"{rate:.4f}", "at": f"{now:.3f}", "leader": self._me})
        self._redis.expire(STATS_KEY, 60)
