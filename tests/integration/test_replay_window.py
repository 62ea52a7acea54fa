"""Retention's failures and the replay window, with real SQL (SQLite and PostgreSQL), Redis and local
storage; the sweep is called directly. The sweeper drops the sealed secrets of failed and canceled
jobs once the replay window has passed, in bounded batches, and leaves those still inside it (a replay
re-sends them) and active jobs alone; a storage that refuses a delete leaves only that job due."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from genqueue.models import retention
from genqueue.models.tables import Job, JobOutput
from genqueue.storage import StorageError
from genqueue.worker.services.sweep import database_now, sweep
from tests.support.worker_ctx import new_job, worker_context


def _end(ctx: object, job_id: str, status: str, ago: timedelta) -> None:
    now = database_now(ctx)  # type: ignore[arg-type]
    with ctx.sessions.begin() as s:  # type: ignore[attr-defined]
        s.execute(update(Job).where(Job.id == job_id).values(status=status, finished_at=now - ago,
                                                             next_check_at=None))


def _sealed(ctx: object) -> dict[str, bool]:
    with ctx.sessions() as s:  # type: ignore[attr-defined]
        return {i: sealed is not None for i, sealed in s.execute(select(Job.id, Job.input_sealed))}


def test_secrets_outlive_a_failure_by_the_replay_window_only(tmp_path: Path, db_url: str, redis_url: str) -> None:
    ctx = worker_context(tmp_path, db_url, redis_url, GENQUEUE_REPLAY_WINDOW="3600")
    old_failed, old_canceled, recent_failed, queued = (new_job(ctx) for _ in range(4))
    _end(ctx, old_failed, "failed", timedelta(hours=2))
    _end(ctx, old_canceled, "canceled", timedelta(hours=1, minutes=1))
    _end(ctx, recent_failed, "failed", timedelta(minutes=59))
    assert all(_sealed(ctx).values())
    report = sweep(ctx)
    assert report.requeued.get("secrets_dropped") == 2
    assert _sealed(ctx) == {old_failed: False, old_canceled: False, recent_failed: True, queued: True}
    # Nothing else of theirs changed: the input without its secrets is still there.
    with ctx.sessions() as s:
        job = s.get(Job, old_failed)
        assert job is not None and job.input_public["prompt"] == "p" and job.outputs_deleted_at is None


def test_each_sweep_drops_a_bounded_batch(tmp_path: Path, db_url: str, redis_url: str) -> None:
    ctx = worker_context(tmp_path, db_url, redis_url)
    ids = [new_job(ctx) for _ in range(5)]
    for job_id in ids:
        _end(ctx, job_id, "failed", timedelta(days=2))
    now = database_now(ctx)
    with ctx.sessions.begin() as s:
        assert retention.drop_replay_secrets(s, now, timedelta(days=1), limit=3) == 3
    with ctx.sessions.begin() as s:
        assert retention.drop_replay_secrets(s, now, timedelta(days=1), limit=3) == 2
        assert retention.drop_replay_secrets(s, now, timedelta(days=1), limit=3) == 0


class _RefusesOne:
    """The real local storage, except that deleting one key fails as a storage outage would."""

    def __init__(self, real: Any, refused: str) -> None:
        self._real, self._refused = real, refused

    def delete(self, key: str) -> None:
        if key == self._refused:
            raise StorageError("cannot delete: No route to host", reason="No route to host")
        self._real.delete(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_a_storage_refusing_a_delete_leaves_that_job_due_and_erases_the_others(
        tmp_path: Path, db_url: str, redis_url: str) -> None:
    ctx = worker_context(tmp_path, db_url, redis_url)
    a, b = new_job(ctx), new_job(ctx)
    keys = {}
    for job_id in (a, b):
        obj = ctx.storage.put_stream(f"jobs/{job_id}/0.png", [b"\x89PNG fake"], "image/png")
        keys[job_id] = obj.key
        with ctx.sessions.begin() as s:
            s.add(JobOutput(job_id=job_id, index=0, content_type="image/png", size=obj.size, sha256=obj.sha256,
                            storage_key=obj.key, storage_uri=obj.uri))
        _end(ctx, job_id, "succeeded", timedelta(days=31))
        with ctx.sessions.begin() as s:
            s.execute(update(Job).where(Job.id == job_id).values(expires_at=database_now(ctx) - timedelta(days=1)))
    flaky = dataclasses.replace(ctx, storage=_RefusesOne(ctx.storage, keys[a]))
    assert sweep(flaky).requeued.get("retention") == 1
    with ctx.sessions() as s:
        deleted = {r.id: r.outputs_deleted_at for r in s.execute(select(Job.id, Job.outputs_deleted_at))}
    assert deleted[a] is None and deleted[b] is not None
    assert ctx.storage.exists(keys[a]) and not ctx.storage.exists(keys[b])
    assert sweep(ctx).requeued.get("retention") == 1  # the storage is back: the next sweep does it
    assert not ctx.storage.exists(keys[a])
