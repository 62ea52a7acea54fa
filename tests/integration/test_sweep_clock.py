"""The sweeper judges by the database's clock, not by the clock of the worker host that happens to run
it (tests/chaos/test_hosts.py runs a host 90 s ahead: before this, its sweeps called every live step
overdue, counted it as lost and pushed its check time 90 s ahead)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

import genqueue.worker.services.sweep as sweep_module
from genqueue.models.tables import Job
from genqueue.worker.services.sweep import database_now, sweep
from tests.support.worker_ctx import new_job, recorded, worker_context

SKEW = timedelta(seconds=90)


class _AheadDatetime(datetime):
    """`datetime` of a host whose clock is SKEW ahead."""

    @classmethod
    def now(cls, tz: Any = None) -> Any:
        return datetime.now(tz) + SKEW


@pytest.fixture
def host_clock_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's clock, as the sweep module could read it, SKEW ahead of the database's."""
    monkeypatch.setattr(sweep_module, "datetime", _AheadDatetime)
    monkeypatch.setattr(sweep_module, "utcnow", lambda: datetime.now(UTC) + SKEW, raising=False)


def _job(ctx: Any, job_id: str) -> Job:
    with ctx.sessions() as s:
        job = s.get(Job, job_id)
    assert job is not None
    return job


def _running(ctx: Any, next_check_in: float) -> str:
    job_id = new_job(ctx)
    when = database_now(ctx) + timedelta(seconds=next_check_in)
    with ctx.sessions.begin() as s:
        s.execute(update(Job).where(Job.id == job_id).values(status="running", next_check_at=when))
    return job_id


def test_database_now_is_the_databases_clock(tmp_path: Path, db_url: str, redis_url: str) -> None:
    ctx = worker_context(tmp_path, db_url, redis_url)
    assert abs((database_now(ctx) - datetime.now(UTC)).total_seconds()) < 2  # same machine, same clock


def test_a_host_clock_ahead_neither_resends_nor_counts_live_steps(
        tmp_path: Path, db_url: str, redis_url: str, host_clock_ahead: None) -> None:
    ctx = worker_context(tmp_path, db_url, redis_url)
    live = _running(ctx, next_check_in=5)  # its poll is due in 5 s by the database's clock
    before = _job(ctx, live).next_check_at
    assert sweep(ctx).total == 0 and recorded(ctx).sent == []
    assert (_job(ctx, live).next_check_at, _job(ctx, live).deliveries) == (before, 0)


def test_an_overdue_step_gets_the_databases_time_as_its_check_time(
        tmp_path: Path, db_url: str, redis_url: str, host_clock_ahead: None) -> None:
    ctx = worker_context(tmp_path, db_url, redis_url)
    lost = _running(ctx, next_check_in=-60)  # a lost poll, overdue by the database's clock
    assert sweep(ctx).total == 1 and recorded(ctx).sent == [("poll", lost)]
    written = _job(ctx, lost).next_check_at
    assert written is not None
    # Not 90 s ahead: the other hosts would drop this job's messages as early duplicates until then.
    assert abs((written - database_now(ctx)).total_seconds()) < 5
