"""When the worker cancels a job's prediction for its deadline: only once Replicate's own Cancel-After
deadline (at least 5 s after the create) plus a grace has passed, so Replicate's `aborted` wins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from genqueue.models.tables import Job
from genqueue.worker.services.poll import DEADLINE_GRACE, _past_replicate_deadline

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def job(deadline_s: float | None, created_s: float | None) -> Job:
    return Job(deadline_at=None if deadline_s is None else T0 + timedelta(seconds=deadline_s),
               prediction_created_at=None if created_s is None else T0 + timedelta(seconds=created_s))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_no_deadline_never_cancels() -> None:
    assert not _past_replicate_deadline(job(None, 0), at(10_000))


def test_waits_for_replicates_deadline_plus_grace() -> None:
    j = job(30, 1)  # Replicate was told Cancel-After 29 s: its deadline is ours
    grace = DEADLINE_GRACE.total_seconds()
    assert not _past_replicate_deadline(j, at(30))
    assert not _past_replicate_deadline(j, at(30 + grace - 0.01))
    assert _past_replicate_deadline(j, at(30 + grace))


def test_short_deadline_uses_replicates_five_second_floor() -> None:
    j = job(5, 3)  # 2 s were left at the create, Replicate was told 5 s: it aborts at 8 s
    grace = DEADLINE_GRACE.total_seconds()
    assert not _past_replicate_deadline(j, at(8 + grace - 0.01))
    assert _past_replicate_deadline(j, at(8 + grace))
