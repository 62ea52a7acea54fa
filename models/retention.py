"""Retention and erasure: a job's stored outputs and its input are deleted when its `expires_at` passes
(the sweeper, in bounded batches off a partial index), or at once on request (`DELETE
/v1/jobs/{id}/outputs`); a failed or canceled job's sealed secrets are dropped after the replay window.

What is deleted: the output bytes in storage (S3 or the local folder), the job's input (public part
emptied, sealed part NULL) and the output URLs Replicate gave. What stays: the job row with its
status, timings and metadata, and each output's record (index, size, sha256): the ops history and the
costs do not change. `outputs_deleted_at` says it happened; an output then answers 410.

The bytes go first, the row's mark second: a crash between them leaves the job due, and the next run
deletes again (deleting a missing object is not an error) before marking it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from genqueue.models.jobs import JOBS
from genqueue.models.status import TERMINAL, JobStatus
from genqueue.models.tables import JobOutput


class Deletes(Protocol):
    """The part of `storage.Storage` erasing needs."""

    def delete(self, key: str) -> None: ...

TERMINAL_VALUES = tuple(s.value for s in TERMINAL)
# Failed and canceled jobs keep their sealed secrets for a replay (`GENQUEUE_REPLAY_WINDOW`).
REPLAYABLE = (JobStatus.FAILED.value, JobStatus.CANCELED.value)


def due_for_retention(session: Session, now: datetime, limit: int) -> list[str]:
    """Terminal jobs whose retention ran out and whose outputs are not deleted yet, oldest expiry first
    (ix_jobs_expiring holds only rows not yet deleted)."""
    return list(session.scalars(
        select(JOBS.c.id).where(JOBS.c.expires_at < now, JOBS.c.outputs_deleted_at.is_(None),
                                JOBS.c.status.in_(TERMINAL_VALUES))
        .order_by(JOBS.c.expires_at).limit(limit)))


def erase(sessions: sessionmaker[Session], storage: Deletes, job_id: str, now: datetime) -> bool:
    """Delete the job's output bytes, then empty its input and mark it; True if this call marked it.
    Only a terminal job is erased (a running one would store outputs after). Raises StorageError when
    the storage refuses a delete (the job stays due)."""
    with sessions() as session:
        keys = list(session.scalars(select(JobOutput.storage_key).where(JobOutput.job_id == job_id)))
    for key in keys:
        storage.delete(key)
    with sessions.begin() as session:
        done = session.execute(
            update(JOBS).where(JOBS.c.id == job_id, JOBS.c.outputs_deleted_at.is_(None),
                               JOBS.c.status.in_(TERMINAL_VALUES))
            .values(outputs_deleted_at=now, input_public={}, input_sealed=None, secret_names=[],
                    output_refs=None, updated_at=now))
        return bool(done.rowcount)  # type: ignore[attr-defined]


def drop_replay_secrets(session: Session, now: datetime, window: timedelta, limit: int) -> int:
    """NULL the sealed secrets of failed/canceled jobs that ended more than `window` ago, `limit` at a
    time (ix_jobs_sealed_finished holds only rows that still have secrets)."""
    ids = list(session.scalars(
        select(JOBS.c.id).where(JOBS.c.input_sealed.is_not(None), JOBS.c.finished_at < now - window,
                                JOBS.c.status.in_(REPLAYABLE))
        .order_by(JOBS.c.finished_at).limit(limit)))
    if not ids:
        return 0
    session.execute(update(JOBS).where(JOBS.c.id.in_(ids), JOBS.c.status.in_(REPLAYABLE))
                    .values(input_sealed=None))
    return len(ids)
