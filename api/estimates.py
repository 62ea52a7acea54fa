"""Queue position and start/finish estimates for the job JSON, from the lanes and the dispatch rate.

Honest estimates, not promises: a queued job's position is `sched.plan.jobs_ahead` over the lanes as
they are now (priority levels above it, its own lane's rank, other keys' fair shares at its level),
and its start is that position over the dispatch rate (the dispatcher's measured rate while it has a
backlog, else the create budget), or, for a key held to `max_running`, over that key's own rate. A
running job is expected to end when predictions of its model usually do (`worker.durations`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy.orm import Session

from genqueue.core.settings import Settings
from genqueue.models.schedule import KeyLimits, key_limits, queued_depths
from genqueue.models.status import JobStatus
from genqueue.models.tables import Job
from genqueue.sched.plan import Depth, KeyRule, effective_priority, jobs_ahead, start_delay
from genqueue.sched.ready import NO_KEY, ReadyQueues, entry
from genqueue.views.job import Estimate
from genqueue.worker.budget import DOCUMENTED_PER_MIN
from genqueue.worker.dispatcher import STATS_KEY
from genqueue.worker.durations import Durations
from genqueue.worker.ratelimit import HEADROOM, RateLimiter

RULES_TTL = 5.0


NONE = Estimate()


class Estimator:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._ready = ReadyQueues(client)
        self._redis = client
        self._durations = Durations(client)
        self._aging = settings.priority_aging
        # The create budget as the fleet has learned it from the account (worker.budget), capped.
        self._limiter = RateLimiter(client, create_per_min=settings.create_rate_per_min,
                                    read_per_min=settings.read_rate_per_min)
        self._rules: tuple[float, dict[str, KeyLimits]] = (0.0, {})

    @property
    def _budget(self) -> float:
        """Creates per second the fleet grants now (the headroom applied)."""
        try:
            return self._limiter.rate_per_min("create") / 60.0
        except redis.RedisError:
            return DOCUMENTED_PER_MIN["create"] * HEADROOM / 60.0

    def rate(self) -> float:
        """Dispatches per second: what the dispatcher measured, else the budget."""
        try:
            raw = self._redis.hget(STATS_KEY, "rate_per_s")
        except redis.RedisError:
            raw = None
        measured = float(raw) if raw else 0.0
        return measured if measured > 0 else self._budget

    def scheduling(self, session: Session, api_key_id: str | None = None) -> dict[str, Any]:
        """The `/v1/stats` section: queue depth by priority and by key, dispatch rate against the budget."""
        by_priority: dict[str, int] = {}
        by_key: dict[str, int] = {}
        for priority, key, n in queued_depths(session, api_key_id):
            by_priority[str(priority)] = by_priority.get(str(priority), 0) + n
            by_key[key or NO_KEY] = by_key.get(key or NO_KEY, 0) + n
        try:
            stats = {_s(k): _s(v) for k, v in self._redis.hgetall(STATS_KEY).items()}
        except redis.RedisError:
            stats = {}
        rate = float(stats.get("rate_per_s", 0.0))
        budget = self._budget * 60 / HEADROOM
        return {
            "queued_by_priority": dict(sorted(by_priority.items(), key=lambda kv: -int(kv[0]))),
            "queued_by_key": dict(sorted(by_key.items(), key=lambda kv: -kv[1])),
            "dispatch_per_min": round(rate * 60, 1),
            "create_budget_per_min": round(budget, 3),
            "dispatch_share_of_budget": round(rate * 60 / budget, 3) if budget else None,
            "dispatcher": stats.get("leader"),
        }

    def _key_rules(self, session: Session) -> dict[str, KeyLimits]:
        at, rules = self._rules
        if time.monotonic() - at > RULES_TTL:
            rules = key_limits(session)
            self._rules = (time.monotonic(), rules)
        return rules

    def for_jobs(self, session: Session, jobs: Sequence[Job]) -> dict[str, Estimate]:
        """Estimates by job id for the queued and running jobs among `jobs` (others: none)."""
        out: dict[str, Estimate] = {}
        queued = [j for j in jobs if j.status == JobStatus.QUEUED.value]
        try:
            if queued:
                out.update(self._queued(session, queued))
            for j in jobs:
                if j.status in (JobStatus.SUBMITTING.value, JobStatus.RUNNING.value):
                    out[j.id] = self._running(j)
        except redis.RedisError:
            pass  # an estimate is never worth failing a read over
        return out

    def _queued(self, session: Session, jobs: Sequence[Job]) -> dict[str, Estimate]:
        now = time.time()
        entries = [entry(j.id, j.priority, j.api_key_id, j.created_at.timestamp()) for j in jobs]
        ranks = self._ready.ranks(entries)
        depths = [Depth(int(name.split(":", 1)[0]), name.split(":", 1)[1], size,
                        effective_priority(int(name.split(":", 1)[0]), head_at, now, self._aging))
                  for name, size, head_at in self._ready.depths()]
        limits = self._key_rules(session)
        rules = {k: KeyRule(v.weight, v.max_running) for k, v in limits.items()}
        rate = self.rate()
        out: dict[str, Estimate] = {}
        for job, e, rank in zip(jobs, entries, ranks, strict=True):
            if rank is None:  # dispatched (in flight) or between lanes: about to start
                out[job.id] = Estimate(0, _at(now))
                continue
            eff = effective_priority(e.priority, e.enqueued_at, now, self._aging)
            ahead = jobs_ahead(depths, priority=e.priority, key=e.key, rank=rank, effective=eff, rules=rules)
            limit = limits.get(e.key)
            delay = start_delay(ahead, rate, key_running_limit=limit.max_running if limit else None,
                                key_ahead=rank, expected_duration=self._durations.expected(job.model))
            out[job.id] = Estimate(ahead, _at(now + delay) if delay is not None else None)
        return out

    def _running(self, job: Job) -> Estimate:
        expected = self._durations.expected(job.model)
        started = job.prediction_created_at or job.submitted_at
        if expected is None or started is None:
            return NONE
        return Estimate(estimated_finish_at=started + timedelta(seconds=expected))


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
