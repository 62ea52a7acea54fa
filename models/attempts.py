"""Attempts of a job: what a new attempt resets, the record of a finished one, and the replay in SQL.

A job's row always holds its current (last) attempt; when a new attempt starts (the retry policy in
worker/lifecycle/retry.py, or a replay here) the finished one is copied into job_attempts in the
same transaction as the compare-and-set that queues the job again. So the job JSON lists every
attempt, and the job's own metrics are the final attempt's.

A replay is set-based (one SELECT ... FOR UPDATE, one INSERT of the records, one UPDATE per distinct
deadline per chunk) so a bulk retry of thousands of jobs costs a few statements per thousand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session

from genqueue.models.jobs import JOBS, QUEUED_AUDIT
from genqueue.models.status import PREDICTION_TERMINAL, REPLAYABLE, JobStatus, check_transition
from genqueue.models.tables import JobAttempt

ATTEMPTS = cast(Table, JobAttempt.__table__)
METRICS = ("predict_time", "total_time", "queue_time", "start_time", "detection_lag", "storage_time",
           "end_to_end_time")
# Everything of the row that belongs to one attempt: cleared when the next one starts, so the next
# claim, create and follow-up see a job that never ran (the create guard in worker/lifecycle/create.py
# then holds per attempt: one claim, one create).
_RESET: dict[str, Any] = {
    "prediction_id": None, "prediction_status": None, "prediction_get_url": None, "prediction_cancel_url": None,
    "prediction_created_at": None, "prediction_started_at": None, "completed_at": None, "output_refs": None,
    "predict_time": None, "total_time": None, "submit_started_at": None, "create_in_flight_until": None,
    "submitted_at": None, "detected_at": None, "finished_at": None, "claimed_by": None, "cancel_requested_at": None,
    "error_code": None, "error_message": None, "polls": 0, "attempts": 0, "deliveries": 0,
    **{m: None for m in METRICS},
}


def attempt_deadline(deadline_seconds: float | None, deadline_at: datetime | None,
                     created_at: datetime) -> float | None:
    """Seconds one attempt may take: as asked at intake (rows from before 0008: their first deadline)."""
    if deadline_seconds is not None:
        return deadline_seconds
    return (deadline_at - created_at).total_seconds() if deadline_at is not None else None


def new_attempt_values(now: datetime, deadline: float | None, backoff: float = 0.0) -> dict[str, Any]:
    """The columns that start the next attempt, queued `backoff` seconds from now (its next_check_at is
    when the sweeper's audit makes sure it is in its lane, so a lost delayed requeue costs one audit)."""
    return {**_RESET, "deadline_at": now + timedelta(seconds=backoff + deadline) if deadline is not None else None,
            "next_check_at": now + timedelta(seconds=backoff) + (QUEUED_AUDIT if backoff <= 0 else timedelta(0))}


def record(job_id: str, attempt: int, status: str, row: Mapping[str, Any],
           finished_at: datetime | None) -> dict[str, Any]:
    """A job_attempts row for the attempt that ended as `row` says (prediction, error, metrics)."""
    return {"job_id": job_id, "attempt": attempt, "status": status, "prediction_id": row.get("prediction_id"),
            "prediction_status": row.get("prediction_status"), "error_code": row.get("error_code"),
            "error_message": row.get("error_message"), "metrics": {m: row.get(m) for m in METRICS},
            "started_at": row.get("submit_started_at"), "finished_at": finished_at}


def add_record(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        session.execute(insert(ATTEMPTS), list(rows))


def earlier_predictions(session: Session, job_id: str) -> frozenset[str]:
    """The predictions of the job's finished attempts: they share its input, so the look-up for a lost
    create answer (worker/services/submit.py) must never adopt one of them as the current attempt's."""
    rows = session.scalars(select(ATTEMPTS.c.prediction_id).where(ATTEMPTS.c.job_id == job_id,
                                                                  ATTEMPTS.c.prediction_id.is_not(None)))
    return frozenset(str(r) for r in rows)


@dataclass
class Replayed:
    """What a replay did: the jobs queued again (id, priority, api_key_id, created_at: a lane entry
    each, to add after the commit), those refused because their sealed secrets are gone (id, secret
    field names), and how many were no longer failed or canceled."""

    queued: list[tuple[str, int, str | None, datetime]] = field(default_factory=list)
    secrets_deleted: list[tuple[str, list[str]]] = field(default_factory=list)
    # Failed while their prediction was not seen terminal (a poisoned poll, a lost prediction): it may
    # still run on Replicate, and a new attempt now could run beside it, so these are not replayed.
    prediction_active: list[str] = field(default_factory=list)
    skipped: int = 0


_REPLAY_COLUMNS = ("id", "status", "attempt", "retry_max_attempts", "secret_names", "input_sealed", "created_at",
                   "deadline_at", "deadline_seconds", "finished_at", *(k for k in _RESET if k not in METRICS),
                   *METRICS)


def replay(session: Session, job_ids: Sequence[str], now: datetime) -> Replayed:
    """Queue these failed or canceled jobs for a new attempt, in the caller's transaction; the caller
    adds `queued` to their lanes after committing. Their rows are locked first (PostgreSQL), so a
    concurrent replay of the same job waits and then finds it queued: one new attempt, one record."""
    for src in REPLAYABLE:
        check_transition(src, JobStatus.QUEUED)
    out = Replayed()
    if not job_ids:
        return out
    replayable = [s.value for s in REPLAYABLE]
    cols = [JOBS.c[name] for name in dict.fromkeys(_REPLAY_COLUMNS)]
    rows = session.execute(select(*cols).where(JOBS.c.id.in_(list(job_ids)), JOBS.c.status.in_(replayable))
                           .with_for_update()).mappings().all()
    out.skipped = len(set(job_ids)) - len(rows)
    records: list[dict[str, Any]] = []
    by_deadline: dict[float | None, list[str]] = {}
    for row in rows:
        if row["prediction_id"] is not None and row["prediction_status"] not in PREDICTION_TERMINAL:
            out.prediction_active.append(row["id"])
            continue
        names = list(row["secret_names"] or [])
        if names and row["input_sealed"] is None:
            out.secrets_deleted.append((row["id"], names))
            continue
        records.append(record(row["id"], row["attempt"], row["status"], dict(row), row["finished_at"]))
        deadline = attempt_deadline(row["deadline_seconds"], row["deadline_at"], row["created_at"])
        by_deadline.setdefault(deadline, []).append(row["id"])
    add_record(session, records)
    for deadline, ids in by_deadline.items():
        values = {**new_attempt_values(now, deadline), "status": JobStatus.QUEUED.value, "updated_at": now,
                  "attempt": JOBS.c.attempt + 1, "retries_left": JOBS.c.retry_max_attempts - 1}
        done = session.execute(update(JOBS).where(JOBS.c.id.in_(ids), JOBS.c.status.in_(replayable)).values(**values)
                               .returning(JOBS.c.id, JOBS.c.priority, JOBS.c.api_key_id, JOBS.c.created_at)).all()
        out.queued.extend((r.id, r.priority, r.api_key_id, r.created_at) for r in done)
    return out
