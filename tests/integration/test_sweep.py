"""The sweeper against real SQL and Redis: what it re-sends, what it leaves alone, and the
delivery counter that ends a job whose step keeps vanishing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import update

from genqueue.models.base import utcnow
from genqueue.models.tables import Job
from genqueue.worker.context import WorkerContext
from genqueue.worker.services.sweep import sweep
from tests.support.worker_ctx import new_job, worker_context


def _ctx(tmp_path: Path, db_url: str, redis_url: str) -> Any:  # Any: its enqueuer is the recording one
    return worker_context(tmp_path, db_url, redis_url)


def _job(ctx: WorkerContext, status: str, overdue: bool, by: float = 600) -> str:
    job_id = new_job(ctx)
    when = utcnow() - timedelta(seconds=by if overdue else 0)
    with ctx.sessions.begin() as s:
        s.execute(update(Job).where(Job.id == job_id).values(status=status, next_check_at=when))
    return job_id


def test_sweep_resends_overdue_steps_only(tmp_path: Path, db_url: str, redis_url: str) -> None:
    ctx = _ctx(tmp_path, db_url, redis_url)
    jobs = {s: _job(ctx, s, overdue=True) for s in ("queued", "submitting", "running", "storing")}
    fresh = _job(ctx, "running", overdue=False)
    done = _job(ctx, "succeeded", overdue=True)
    report = sweep(ctx)
    sent = set(ctx.enqueuer.sent)
    assert sent == {("submit", jobs["queued"]), ("submit", jobs["submitting"]), ("poll", jobs["running"]),
                    ("store", jobs["storing"])}
    assert report.total == 4 and fresh not in {j for _, j in sent} and done not in {j for _, j in sent}
    # Pushed forward: an immediate second sweep re-sends nothing.
    ctx.enqueuer.sent.clear()
    assert sweep(ctx).total == 0
    with ctx.sessions() as s:
        assert s.get(Job, jobs["running"]).deliveries == 1  # a lost step counts
        assert s.get(Job, jobs["queued"]).deliveries == 0  # waiting in a queue does not


def test_queued_backlog_in_the_broker_is_not_resent(tmp_path: Path, db_url: str, redis_url: str) -> None:
    ctx = _ctx(tmp_path, db_url, redis_url)
    queued = [_job(ctx, "queued", overdue=True) for _ in range(3)]
    client = redis.Redis.from_url(redis_url)
    client.rpush("genqueue", *[b"msg"] * 3)  # their messages are still waiting in the list
    assert sweep(ctx).total == 0
    client.delete("genqueue")  # Redis restarted empty: every message gone
    assert {j for _, j in ctx.enqueuer.sent} == set() and sweep(ctx).total == 3
    assert {j for _, j in ctx.enqueuer.sent} == set(queued)


def test_storing_backlog_in_the_store_queue_is_not_resent(tmp_path: Path, db_url: str, redis_url: str) -> None:
    """A burst of pushed results leaves copies waiting in genqueue.store longer than stuck_after:
    those are behind, not lost, and re-sending them would double the copy work."""
    ctx = _ctx(tmp_path, db_url, redis_url)
    storing = [_job(ctx, "storing", overdue=True) for _ in range(2)]
    client = redis.Redis.from_url(redis_url)
    client.rpush("genqueue.store", *[b"msg"] * 2)
    assert sweep(ctx).total == 0
    client.delete("genqueue.store")
    assert sweep(ctx).total == 2
    assert sorted(ctx.enqueuer.sent) == sorted(("store", j) for j in storing)


def test_a_step_seconds_overdue_and_not_in_its_queue_is_resent_at_once_without_counting(
        tmp_path: Path, db_url: str, redis_url: str) -> None:
    """Recovery in seconds: a step 3 s overdue (not yet STUCK_AFTER) is re-sent when its queue's list
    cannot hold its message, the most overdue first, and only a 30 s overdue one counts as lost."""
    ctx = _ctx(tmp_path, db_url, redis_url)
    older = _job(ctx, "running", overdue=True, by=4)
    newer = _job(ctx, "running", overdue=True, by=3)
    barely = _job(ctx, "running", overdue=True, by=0.5)  # not overdue enough: a step may run a bit late
    client = redis.Redis.from_url(redis_url)
    client.rpush("genqueue.follow", b"msg")  # one message waits: it may be one of the two
    assert sweep(ctx).total == 1 and ctx.enqueuer.sent == [("poll", older)]
    client.delete("genqueue.follow")
    ctx.enqueuer.sent.clear()
    assert sweep(ctx).total == 1 and ctx.enqueuer.sent == [("poll", newer)]
    with ctx.sessions() as s:
        assert [s.get(Job, j).deliveries for j in (older, newer, barely)] == [0, 0, 0]
