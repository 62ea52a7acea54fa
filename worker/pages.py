"""The page reader: with webhooks off, detects finished predictions by list pages, within the read budget.

Thousands of long predictions in flight share 3,000 reads a minute. A GET per prediction near its
finish costs one read each; a list page over a creation-time window where many are due detects up to
100 for one read. Which reads to make is `lifecycle.pages.plan` (pure); this module owns the loop,
the state it needs (running predictions from SQL, when a read last saw each one) and the calls.

A finished prediction found here is handed to the `genqueue.observe` step exactly like a webhook push
(its JSON minus `input` and `logs`, so no secret reaches the broker), which applies it with the same
compare-and-set as a poll. The job's poll message stays its safety net (`lifecycle.policy.Paged`
schedules it after the expected finish), so a reader that is down or starved costs lag, never a job.

Its own thread and lease, next to the dispatcher's, rather than a step of the dispatcher's loop: a
page read is an HTTP call of tens of ms that would hold up create tokens, and a failing Replicate
read must not pause dispatching. One reader runs at a time (a Redis lease, like the dispatcher's);
a new leader starts with no memory, which costs at most one extra read per due window.
Every read takes a token from the fleet's read bucket, and one tick spends at most `SHARE` of it.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis
from sqlalchemy import select

from genqueue.models.db import make_engine, make_session_factory
from genqueue.models.jobs import JOBS
from genqueue.models.status import JobStatus
from genqueue.worker.background import Background
from genqueue.worker.durations import Durations
from genqueue.worker.lease import Lease
from genqueue.worker.lifecycle.pages import Kind, Read, Tracked, plan, reads_per_tick
from genqueue.worker.metrics import Recorder
from genqueue.worker.ratelimit import RateLimiter
from genqueue.worker.replicate import PermanentError, Prediction, ReplicateClient, TransientError, make_http_client
from genqueue.worker.transport import make_transport

if TYPE_CHECKING:
    from collections.abc import Callable

    from celery import Celery
    from sqlalchemy.orm import Session, sessionmaker

    from genqueue.core.settings import Settings

log = logging.getLogger(__name__)

LEADER_KEY = "gq:pages:leader"
TICK = 0.25  # seconds between plans: a due window waits at most this long for its read
REFRESH = 1.0  # seconds between reads of the running jobs from SQL
SHARE = 0.5  # of the fleet's read budget, at most, per tick (polls, cancels and lookups need the rest)
GONE_KEEP = 600.0  # a finished prediction still appears in list pages: its creation time counts this long
HANDED_HOLD = 15.0  # a job handed to observe is not read again for this long (it leaves `running`)
MAX_MESSAGE_BYTES = 256 * 1024  # as a webhook's: a larger prediction (data: URIs) is left to its poll
MAX_FOLLOW = 2  # `next` pages followed per window read (more predictions there than we knew of)
READ_TIMEOUT = 30.0


@dataclass(slots=True)
class Followed:
    job_id: str
    prediction_id: str
    created: float
    model: str | None
    get_url: str | None
    seen_at: float | None = None
    handed_at: float | None = None


def observation(p: Prediction) -> dict[str, Any]:
    """What an observe message carries: the fields a webhook's carries, rebuilt from the parsed
    prediction (which never kept the input), so neither `input` nor `logs` can reach the broker."""
    def iso(value: datetime | None) -> str | None:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value is not None else None

    metrics = {k: v for k, v in (("predict_time", p.predict_time), ("total_time", p.total_time)) if v is not None}
    urls = {k: v for k, v in (("get", p.urls_get), ("cancel", p.urls_cancel)) if v is not None}
    return {"id": p.id, "status": p.status, "output": p.output, "error": p.error, "metrics": metrics,
            "created_at": iso(p.created_at), "started_at": iso(p.started_at), "completed_at": iso(p.completed_at),
            "urls": urls, "data_removed": p.data_removed, "version": p.version, "model": p.model}


class Reader:
    """One page reader's state and its tick; the thread around it is `PageReader`."""

    def __init__(self, settings: Settings, client: redis.Redis, sessions: sessionmaker[Session],
                 replicate: ReplicateClient, observe: Callable[[str, dict[str, Any]], None], me: str,
                 clock: Callable[[], float] = time.time, limiter: RateLimiter | None = None) -> None:
        self._redis = client
        self._sessions = sessions
        self._replicate = replicate
        self._observe = observe
        self._me = me
        # Wall clock, compared with Replicate's created_at: the simulator shares it; against Replicate
        # an NTP-synced host is off by milliseconds, well under a tick.
        self._clock = clock
        self._lease = Lease(client, LEADER_KEY, me, "page reader")
        self.limiter = limiter or RateLimiter(client, create_per_min=settings.create_rate_per_min,
                                              read_per_min=settings.read_rate_per_min)
        self.durations = Durations(client)
        self.max_reads = 1  # set from the fleet's read rate (learned from the account) at each refresh
        self.followed: dict[str, Followed] = {}
        self._by_prediction: dict[str, str] = {}
        self._gone: list[tuple[float, float]] = []  # (left running at, created) of finished predictions
        self._known: list[float] = []
        self._refreshed_at = 0.0
        self.reads = 0  # reads made by this reader (figures for tests and logs)

    def leads(self) -> bool:
        was = self._lease.held
        if not self._lease.renew() and was:
            self.followed, self._by_prediction, self._gone = {}, {}, []  # another reader follows them now
        return self._lease.held

    def resign(self) -> None:
        self._lease.resign()

    def step(self) -> float:
        """Make the reads due now (within the budget); returns seconds to pause before the next tick."""
        if not self.leads():
            return 1.0
        now = start = self._clock()
        if now - self._refreshed_at >= REFRESH:
            self.refresh(now)
        reads = plan(self.tracked(now), self._known, now, self.max_reads)
        for read in reads:
            wait = self.limiter.acquire("read")
            if wait > 0:
                return min(TICK, wait)
            if not self.read(read, self._clock()):
                return TICK
        # A steady cadence: a due window waits TICK/2 on average, however long the reads took.
        return max(0.0, TICK - (self._clock() - start))

    def tracked(self, now: float) -> list[Tracked]:
        expected = {m: self.durations.expected(m) for m in {f.model for f in self.followed.values()}}
        return [Tracked(f.job_id, f.created, f.model, expected[f.model], f.seen_at)
                for f in self.followed.values()
                if f.handed_at is None or now - f.handed_at > HANDED_HOLD]

    def refresh(self, now: float) -> None:
        """The running jobs from SQL; those that left `running` still count in the windows (a page
        lists finished predictions too) for GONE_KEEP."""
        with self._sessions() as session:
            rows = session.execute(
                select(JOBS.c.id, JOBS.c.prediction_id, JOBS.c.prediction_created_at, JOBS.c.model,
                       JOBS.c.prediction_get_url)
                .where(JOBS.c.status == JobStatus.RUNNING.value, JOBS.c.prediction_id.is_not(None),
                       JOBS.c.prediction_created_at.is_not(None))
            ).all()
        fresh: dict[str, Followed] = {}
        for r in rows:
            old = self.followed.get(r.id)
            if old is not None and old.prediction_id == r.prediction_id:
                fresh[r.id] = old
            else:
                fresh[r.id] = Followed(r.id, r.prediction_id, r.prediction_created_at.timestamp(), r.model,
                                       r.prediction_get_url)
        self._gone = [g for g in self._gone if now - g[0] < GONE_KEEP]
        self._gone += [(now, f.created) for job_id, f in self.followed.items() if job_id not in fresh]
        self.followed = fresh
        self._by_prediction = {f.prediction_id: f.job_id for f in fresh.values()}
        self._known = sorted([f.created for f in fresh.values()] + [created for _, created in self._gone])
        self.max_reads = reads_per_tick(self.limiter.rate_per_min("read"), SHARE, TICK)
        self._refreshed_at = now

    def read(self, read: Read, now: float) -> bool:
        """Make one read and apply what it saw; False when Replicate refused for now (stop the tick)."""
        targets = [self.followed[j] for j in read.job_ids if j in self.followed]
        try:
            if read.kind is Kind.GET and targets and targets[0].get_url:
                self.reads += 1
                self.apply([self._replicate.get(targets[0].get_url)], now)
            else:
                self.reads += 1
                page = self._replicate.list(created_after=datetime.fromtimestamp(read.after, UTC),
                                            created_before=datetime.fromtimestamp(read.before, UTC))
                self.apply(page.results, now)
                # More than a page in the window (predictions we did not know of): follow `next` while
                # a target is still unseen, if this tick's share of the budget allows.
                for _ in range(MAX_FOLLOW):
                    if not page.next or all(now in (t.seen_at, t.handed_at) for t in targets):
                        break
                    if self.limiter.acquire("read") > 0:
                        break
                    self.reads += 1
                    page = self._replicate.list(url=page.next)
                    self.apply(page.results, now)
        except TransientError as exc:
            if exc.status_code == 429:
                self.limiter.pause("read", exc.retry_after or 1.0)
            log.info("page reader: read deferred (%s)", exc)
            return False
        except PermanentError as exc:
            log.warning("page reader: read refused (%s)", exc)
        for t in targets:  # read, even if absent from the answer: backoff applies, no re-read every tick
            if t.handed_at != now:
                t.seen_at = now
        return True

    def apply(self, predictions: list[Prediction], now: float) -> None:
        for p in predictions:
            job_id = self._by_prediction.get(p.id)
            f = self.followed.get(job_id) if job_id is not None else None
            if f is None:
                continue
            if not p.is_terminal:
                f.seen_at = now
                continue
            if f.handed_at is not None and now - f.handed_at <= HANDED_HOLD:
                continue
            data = observation(p)
            if len(json.dumps(data)) > MAX_MESSAGE_BYTES:
                log.info("job=%s finished prediction too large for a message; left to its poll", f.job_id)
                f.seen_at = now
                continue
            self._observe(f.job_id, data)
            f.handed_at = now
            if p.completed_at is not None:
                log.debug("job=%s finished %.3f s before the read that found it", f.job_id,
                          now - p.completed_at.timestamp())


class PageReader(Background):
    """The reader's thread in a worker's main process (started with the dispatcher)."""

    name = "genqueue-pages"
    what = "page reader"

    def __init__(self, settings: Settings, app: Celery, worker_id: str) -> None:
        super().__init__(worker_id)
        self._settings = settings
        self._app = app

    def open(self, resources: ExitStack) -> Callable[[], float]:
        from genqueue.worker.context import budget_learner
        from genqueue.worker.enqueue import Enqueuer

        s = self._settings
        client = redis.Redis.from_url(s.redis_url, socket_timeout=10, socket_connect_timeout=5)
        resources.callback(client.close)
        # A connection per query, none kept: the main process may fork pool children later.
        engine = make_engine(s.effective_database_url, no_pool=True)
        resources.callback(engine.dispose)
        recorder = Recorder(client)
        http = make_http_client(base_url=s.replicate_base_url, token=s.token(), timeout=READ_TIMEOUT,
                                transport=make_transport(), max_connections=4)
        resources.callback(http.close)
        resources.callback(recorder.flush)
        limiter = RateLimiter(client, create_per_min=s.create_rate_per_min, read_per_min=s.read_rate_per_min)
        replicate = ReplicateClient(http, s.replicate_base_url, on_response=recorder.replicate_response,
                                    on_rate_headers=budget_learner(limiter))  # its answers teach the fleet too
        reader = Reader(s, client, make_session_factory(engine), replicate, Enqueuer(self._app).observe,
                        self.worker_id, limiter=limiter)
        resources.callback(reader.resign)
        return reader.step

