"""The sweeper against real SQL and Redis: what it re-sends, what it leaves alone, and the
delivery counter that ends a job whose step keeps vanishing."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import delete, insert, select, update

from genqueue.models.base import utcnow
from genqueue.models.heartbeats import HEARTBEATS, db_epoch, read_beats
from genqueue.models.tables import Job
from genqueue.sched.plan import Pick
from genqueue.sched.ready import entry
from genqueue.worker.context import WorkerContext
from genqueue.worker.heartbeat import Heartbeat, new_worker_id
from genqueue.worker.lifecycle.policy import Polling
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
    # Poll messages carry each running job (Polling): an overdue one lost its message. (Without poll
    # messages, a running job's safety-net poll is simply due at next_check_at: test_webhooks.)
    ctx.policy = dataclasses.replace(ctx.policy, follow=Polling())
    jobs = {s: _job(ctx, s, overdue=True) for s in ("queued", "submitting", "running", "storing")}
    fresh = _job(ctx, "running", overdue=True, by=-60)  # its check is a minute ahead: not due
    done = _job(ctx, "succeeded", overdue=True)
    report = sweep(ctx)
    sent = set(ctx.enqueuer.sent)
    assert sent == {("submit", jobs["submitting"]), ("poll", jobs["running"]), ("store", jobs["storing"])}
    # A queued job is not sent: it goes back to its lane, where the dispatcher gives it a create token.
    assert report.requeued == {"enqueue": 1, "submit": 1, "poll": 1, "store": 1}
    assert _in_lanes(ctx) == [jobs["queued"]]
    assert fresh not in {j for _, j in sent} and done not in {j for _, j in sent}
    # Pushed forward: an immediate second sweep re-sends nothing.
    ctx.enqueuer.sent.clear()
    assert sweep(ctx).total == 0
    with ctx.sessions() as s:
        assert s.get(Job, jobs["running"]).deliveries == 1  # a lost step counts
        assert s.get(Job, jobs["queued"]).deliveries == 0  # waiting in a queue does not


def _in_lanes(ctx: WorkerContext) -> list[str]:
    return [job_id for lane in ctx.ready.lanes(1000) for job_id, _ in lane.heads]


def test_overdue_queued_jobs_are_put_back_only_where_they_are_missing(tmp_path: Path, db_url: str,
                                                                      redis_url: str) -> None:
    ctx = _ctx(tmp_path, db_url, redis_url)
    waiting, dispatched, lost = (_job(ctx, "queued", overdue=True) for _ in range(3))
    with ctx.sessions() as s:
        rows = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_([waiting, dispatched, lost])))}
    entries = {i: entry(i, 5, None, rows[i].created_at.timestamp()) for i in rows}
    ctx.ready.add([entries[waiting], entries[dispatched]])
    lane = ctx.ready.lanes(10)[0]
    assert ctx.ready.take([Pick(lane, dispatched)]) == [dispatched]  # in flight: its submit is on its way
    assert sweep(ctx).requeued == {"enqueue": 1}
    assert sorted(_in_lanes(ctx)) == sorted([waiting, lost])  # the dispatched one is not doubled
    assert ctx.enqueuer.sent == []  # no submit message: only the dispatcher sends those
    redis.Redis.from_url(redis_url).flushdb()  # Redis restarted empty: the audit finds them again later
    with ctx.sessions.begin() as s:
        s.execute(update(Job).where(Job.id.in_(list(rows))).values(next_check_at=utcnow() - timedelta(seconds=5)))
    assert sweep(ctx).requeued == {"enqueue": 3}


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
    cannot hold its message, the most overdue first, and only a 30 s overdue one counts as lost.
    (The rule of a strategy that sends poll messages: Polling.)"""
    ctx = _ctx(tmp_path, db_url, redis_url)
    ctx.policy = dataclasses.replace(ctx.policy, follow=Polling())
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


def _beats(ctx: WorkerContext, **rows: tuple[float, float]) -> None:
    """Heartbeat rows by worker id: (seconds since its last beat, seconds since its run started),
    against the database's own clock, as the workers write them."""
    with ctx.sessions.begin() as s:
        now = s.execute(select(db_epoch(s))).scalar_one()
        s.execute(delete(HEARTBEATS))
        for worker_id, (silent, run) in rows.items():
            s.execute(insert(HEARTBEATS).values(id=worker_id, beat_at=now - silent, since=now - run))


def _claimed(ctx: WorkerContext, claimant: str) -> str:
    job_id = new_job(ctx)
    until = utcnow() + timedelta(seconds=40)  # the create window is open
    with ctx.sessions.begin() as s:
        s.execute(update(Job).where(Job.id == job_id).values(
            status="submitting", claimed_by=claimant, submit_started_at=utcnow() - timedelta(seconds=8),
            create_in_flight_until=until, next_check_at=until))
    return job_id


def test_a_create_in_flight_in_a_dead_worker_is_looked_up_at_once(tmp_path: Path, db_url: str,
                                                                   redis_url: str) -> None:
    ctx = _ctx(tmp_path, db_url, redis_url)
    orphaned, alive = _claimed(ctx, "host-a:1:dead"), _claimed(ctx, "host-b:2:live")
    _beats(ctx, **{"host-a:1:dead": (8.0, 300.0), "host-b:2:live": (0.3, 300.0)})
    assert sweep(ctx).requeued == {"submit": 1} and ctx.enqueuer.sent == [("submit", orphaned)]
    with ctx.sessions() as s:
        assert s.get(Job, orphaned).create_in_flight_until <= utcnow()  # its next submit reconciles
        assert s.get(Job, alive).create_in_flight_until > utcnow()
    ctx.enqueuer.sent.clear()
    assert sweep(ctx).total == 0  # released once


def test_a_silence_every_worker_shares_releases_nothing(tmp_path: Path, db_url: str, redis_url: str) -> None:
    """Just after a database outage every worker's run restarts: nobody can tell the dead apart yet."""
    ctx = _ctx(tmp_path, db_url, redis_url)
    _claimed(ctx, "host-a:1:x")
    _beats(ctx, **{"host-a:1:x": (20.0, 300.0), "host-b:2:y": (0.2, 1.0)})
    assert sweep(ctx).total == 0 and ctx.enqueuer.sent == []


def test_a_worker_heartbeat_is_written_by_the_database_clock(tmp_path: Path, db_url: str, redis_url: str) -> None:
    ctx = _ctx(tmp_path, db_url, redis_url)
    hb = Heartbeat(ctx.settings.effective_database_url, new_worker_id(), every=0.1)
    hb.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with ctx.sessions() as s:
                db_now, beats = read_beats(s)
            mine = [b for b in beats if b.worker_id == hb.worker_id]
            if mine and mine[0].beat_at > mine[0].since:
                break
            time.sleep(0.05)
        assert mine and abs(db_now - mine[0].beat_at) < 2 and mine[0].since <= mine[0].beat_at
    finally:
        hb.stop()
