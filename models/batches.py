"""Batches in SQL: create and seal one, its refused lines, its counts (aggregated from its jobs by
batch_id, never counters), its results in input order, cancel, and the one place a batch turns terminal.

`batch_became_terminal` is called exactly once per batch, inside the transaction of the compare-and-set
that recorded it; the batch callback (the job-callback outbox) is to be wired there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.orm import Session, selectinload

from genqueue.models import callbacks
from genqueue.models.base import utcnow
from genqueue.models.ids import new_id
from genqueue.models.status import ACTIVE, JobStatus, check_transition
from genqueue.models.tables import Batch, BatchError, Job

log = logging.getLogger(__name__)

JOBS = cast(Table, Job.__table__)
ACTIVE_NAMES = tuple(s.value for s in ACTIVE)
PAGE = 1000  # rows per read when streaming results or cancelling
ABANDONED_AFTER = timedelta(minutes=10)


def create_batch(session: Session, *, api_key_id: str | None, callback_url: str | None,
                 meta: Mapping[str, str] | None, now: datetime | None = None) -> Batch:
    now = now or utcnow()
    batch = Batch(id=new_id(), api_key_id=api_key_id, callback_url=callback_url, meta=dict(meta) if meta else None,
                  created_at=now, updated_at=now, lines=0, rejected=0, truncated=False)
    session.add(batch)
    session.flush()
    return batch


def touch(session: Session, batch_id: str, now: datetime | None = None) -> None:
    """A chunk of the batch was written (see `seal_abandoned`)."""
    session.execute(update(Batch).where(Batch.id == batch_id).values(updated_at=now or utcnow()))


def seal_abandoned(session: Session, now: datetime, idle: timedelta = ABANDONED_AFTER) -> int:
    """Seal batches still "accepting" that no chunk touched for `idle` (the API process reading the
    body died): they keep the lines that were written, count as truncated, and can finish."""
    jobs = select(func.count()).where(Job.batch_id == Batch.id).scalar_subquery()
    refused = select(func.count()).where(BatchError.batch_id == Batch.id).scalar_subquery()
    result = session.execute(update(Batch).where(Batch.sealed_at.is_(None), Batch.updated_at < now - idle)
                             .values(sealed_at=now, truncated=True, lines=jobs + refused, rejected=refused))
    count = int(result.rowcount)  # type: ignore[attr-defined]
    if count:
        log.warning("sealed %d batches whose body stopped arriving", count)
    return count


def cancel_requested(session: Session, batch_id: str) -> bool:
    return session.scalar(select(Batch.cancel_requested_at).where(Batch.id == batch_id)) is not None


def record_errors(session: Session, batch_id: str, errors: Sequence[tuple[int, list[dict[str, str]]]]) -> None:
    """Refused lines (line number, [{"field", "reason"}]), listed in the batch's results at their place."""
    if errors:
        session.execute(cast(Table, BatchError.__table__).insert(), [
            {"batch_id": batch_id, "line": line, "fields": fields} for line, fields in errors])


def seal(session: Session, batch_id: str, *, lines: int, rejected: int, truncated: bool,
         now: datetime | None = None) -> None:
    """The body is read: no job will join the batch any more."""
    session.execute(update(Batch).where(Batch.id == batch_id).values(
        sealed_at=now or utcnow(), lines=lines, rejected=rejected, truncated=truncated))


def counts(session: Session, batch_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """{batch id: {status: jobs}}, from ix_jobs_batch_status (an index-only aggregate)."""
    out: dict[str, dict[str, int]] = {b: {} for b in batch_ids}
    if batch_ids:
        rows = session.execute(select(Job.batch_id, Job.status, func.count())
                               .where(Job.batch_id.in_(list(batch_ids))).group_by(Job.batch_id, Job.status))
        for batch_id, status, n in rows:
            out[str(batch_id)][status] = int(n)
    return out


def results(session: Session, batch_id: str) -> Iterator[tuple[int, Job | list[dict[str, str]]]]:
    """(line, job) for accepted lines and (line, reasons) for refused ones, in input order, read a page
    at a time (a 50,000-job batch is never in memory): two keyset walks merged by line."""
    jobs = _pages(session, batch_id, jobs=True)
    errors = _pages(session, batch_id, jobs=False)
    job = next(jobs, None)
    err = next(errors, None)
    while job is not None or err is not None:
        if err is None or (job is not None and job[0] < err[0]):
            assert job is not None
            yield job
            job = next(jobs, None)
        else:
            yield err
            err = next(errors, None)


def _pages(session: Session, batch_id: str, *, jobs: bool) -> Iterator[tuple[int, Any]]:
    after = -1
    while True:
        if jobs:
            rows: Sequence[Any] = session.scalars(
                select(Job).options(selectinload(Job.outputs))
                .where(Job.batch_id == batch_id, Job.batch_seq > after).order_by(Job.batch_seq).limit(PAGE)).all()
            page = [(cast(int, j.batch_seq), j) for j in rows]
        else:
            rows = session.scalars(select(BatchError).where(BatchError.batch_id == batch_id, BatchError.line > after)
                                   .order_by(BatchError.line).limit(PAGE)).all()
            page = [(e.line, e.fields) for e in rows]
        session.expunge_all()  # a page is dropped before the next is read
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1][0]


def cancel(session: Session, batch_id: str, now: datetime) -> list[str]:
    """Ask for the batch's cancel: queued jobs are canceled here (compare-and-set per job, executed a
    page at a time), submitting and running ones are marked. Returns the marked ones, to which the
    caller sends a cancel message after committing. Finished jobs are left as they are."""
    check_transition(JobStatus.QUEUED, JobStatus.CANCELED)
    session.execute(update(Batch).where(Batch.id == batch_id, Batch.cancel_requested_at.is_(None))
                    .values(cancel_requested_at=now))
    stmt = (update(JOBS).where(JOBS.c.id == bindparam("b_id"), JOBS.c.status == JobStatus.QUEUED.value)
            .values(status=JobStatus.CANCELED.value, finished_at=now, updated_at=now, error_code=None,
                    end_to_end_time=bindparam("b_e2e")))
    after = ""
    while True:
        page = session.execute(select(Job.id, Job.created_at).where(
            Job.batch_id == batch_id, Job.status == JobStatus.QUEUED.value, Job.id > after)
            .order_by(Job.id).limit(PAGE)).all()
        if page:
            session.connection().execute(stmt, [{"b_id": i, "b_e2e": (now - c).total_seconds()} for i, c in page])
        if len(page) < PAGE:
            break
        after = page[-1][0]
    running = (JobStatus.SUBMITTING.value, JobStatus.RUNNING.value)
    marked = session.execute(
        update(JOBS).where(JOBS.c.batch_id == batch_id, JOBS.c.status.in_(running),
                           JOBS.c.cancel_requested_at.is_(None))
        .values(cancel_requested_at=now, updated_at=now).returning(JOBS.c.id)).scalars().all()
    return list(marked)


def close_finished(session: Session, now: datetime, limit: int = 100) -> list[str]:
    """Record as finished every sealed batch whose jobs are all terminal (one NOT EXISTS per open
    batch on ix_jobs_batch_status); `batch_became_terminal` runs once for each, in this transaction.
    Batches whose body stopped arriving long ago are sealed first (`seal_abandoned`)."""
    seal_abandoned(session, now)
    active = (select(Job.id).where(Job.batch_id == Batch.id, Job.status.in_(ACTIVE_NAMES))
              .limit(1).exists())
    ready = session.scalars(select(Batch.id).where(Batch.finished_at.is_(None), Batch.sealed_at.is_not(None), ~active)
                            .limit(limit)).all()
    closed = []
    for batch_id in ready:
        won = session.execute(update(Batch).where(Batch.id == batch_id, Batch.finished_at.is_(None))
                              .values(finished_at=now)).rowcount  # type: ignore[attr-defined]
        if won:
            batch = session.get(Batch, batch_id)
            assert batch is not None
            batch_became_terminal(session, batch)
            closed.append(batch_id)
    return closed


def batch_became_terminal(session: Session, batch: Batch) -> None:
    """THE place a batch turns terminal (every job terminal, the body read): its callback is queued in
    the callback outbox in this same transaction, so it is delivered at least once like a job's."""
    log.info("batch finished batch=%s callback=%s", batch.id, "yes" if batch.callback_url else "no")
    if batch.callback_url:
        callbacks.add_for_batch(session, batch.id, batch.api_key_id, batch.callback_url, batch.finished_at or utcnow())


def get(session: Session, batch_id: str) -> Batch:
    batch = session.get(Batch, batch_id, populate_existing=True)
    assert batch is not None
    return batch
