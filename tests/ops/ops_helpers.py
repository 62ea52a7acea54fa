"""Seed data for the ops tests: jobs with known timings, statuses, errors and costs, and what to expect."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from genqueue.models.jobs import STUCK_AFTER as JOB_STUCK_AFTER
from genqueue.models.tables import Job, JobOutput
from tests.support.fakes import MemoryStorage

PAINTER = "acme/painter"
SKETCHER = "acme/sketcher"
PRICE = 0.0014
STUCK_AFTER = JOB_STUCK_AFTER.total_seconds()  # what the app reports as stuck


@dataclass
class Seeded:
    now: datetime
    ids: dict[str, list[str]] = field(default_factory=dict)  # label -> job ids


def _job(now: datetime, label: str, status: str, model: str, key_id: str, created_ago: float, **kw: Any) -> Job:
    created = now - timedelta(seconds=created_ago)
    return Job(status=status, target="model", model=model, input_public={"prompt": f"{label} prompt"},
               secret_names=[], api_key_id=key_id, created_at=created, updated_at=created, **kw)


def _finished(now: datetime, label: str, status: str, model: str, key_id: str, *, predict: float | None,
              queue: float, start: float, lag: float, storage: float,
              prediction_status: str, error: tuple[str, str] | None = None, finished_ago: float = 60.0) -> Job:
    # A consistent timeline, built backwards from finished_at.
    finished = now - timedelta(seconds=finished_ago)
    completed = finished - timedelta(seconds=storage + lag)
    submitted = completed - timedelta(seconds=(predict or 0.0) + start)
    created = submitted - timedelta(seconds=queue + 0.4)
    created_ago = (now - created).total_seconds()
    return _job(now, label, status, model, key_id, created_ago,
                submit_started_at=created + timedelta(seconds=queue), submitted_at=submitted,
                prediction_id=f"p_{label}", prediction_status=prediction_status,
                prediction_created_at=submitted, prediction_started_at=submitted + timedelta(seconds=start),
                completed_at=completed, detected_at=completed + timedelta(seconds=lag), finished_at=finished,
                predict_time=predict, total_time=(predict or 0) + start, queue_time=queue, start_time=start,
                detection_lag=lag, storage_time=storage,
                end_to_end_time=(finished - created).total_seconds(),
                error_code=error[0] if error else None, error_message=error[1] if error else None)


def seed(sessions: sessionmaker[Session], now: datetime, alice: str, bob: str,
         storage: MemoryStorage | None = None, png: bytes | None = None) -> Seeded:
    """15 jobs: 5 succeeded, 3 failed (1 aborted), 1 canceled, 2 queued, 1 submitting, 2 running, 1 storing."""
    out = Seeded(now=now)
    rows: list[tuple[str, Job]] = []
    for i, predict in enumerate((1.0, 2.0, 3.0, 4.0, 10.0)):
        rows.append(("succeeded", _finished(now, f"ok{i}", "succeeded", PAINTER, alice, predict=predict,
                                            queue=0.1 * (i + 1), start=0.5, lag=0.2,
                                            storage=0.3, prediction_status="succeeded", finished_ago=1500 - i * 120)))
    rows.append(("canceled", _finished(now, "cx", "canceled", PAINTER, bob, predict=2.0, queue=0.2,
                                       start=0.5, lag=0.2, storage=0.0, prediction_status="canceled",
                                       finished_ago=800)))
    rows.append(("failed", _finished(now, "f1", "failed", SKETCHER, bob, predict=1.5, queue=0.3,
                                     start=0.5, lag=0.2, storage=0.0, prediction_status="failed",
                                     error=("prediction_failed", "boom old"), finished_ago=1000)))
    rows.append(("failed", _finished(now, "f2", "failed", SKETCHER, bob, predict=None, queue=0.3,
                                     start=0.5, lag=0.2, storage=0.0, prediction_status="failed",
                                     error=("prediction_failed", "boom new"), finished_ago=760)))
    rows.append(("aborted", _finished(now, "ab", "failed", SKETCHER, bob, predict=0.5, queue=0.3,
                                      start=0.5, lag=0.2, storage=0.0, prediction_status="aborted",
                                      error=("prediction_aborted", "aborted by Replicate"), finished_ago=720)))
    rows.append(("queued", _job(now, "q1", "queued", PAINTER, alice, 600)))
    rows.append(("queued", _job(now, "q2", "queued", PAINTER, alice, 30)))
    rows.append(("submitting", _job(now, "s1", "submitting", PAINTER, alice, 20,
                                    submit_started_at=now - timedelta(seconds=10))))
    run = {"submitted_at": now - timedelta(seconds=300), "prediction_id": "p_run"}
    rows.append(("starting", _job(now, "r1", "running", PAINTER, alice, 400, prediction_status="starting",
                                  next_check_at=now + timedelta(seconds=30), **run)))
    rows.append(("processing", _job(now, "r2", "running", PAINTER, alice, 400, prediction_status="processing",
                                    next_check_at=now - timedelta(seconds=STUCK_AFTER + 60), **run)))
    rows.append(("storing", _job(now, "st", "storing", PAINTER, alice, 400, prediction_status="succeeded", **run)))
    with sessions.begin() as s:
        for label, job in rows:
            s.add(job)
            s.flush()
            out.ids.setdefault(label, []).append(job.id)
        if storage is not None and png is not None:
            job_id = out.ids["succeeded"][-1]
            storage.objects["k0"] = (png, "image/png")
            s.add(JobOutput(job_id=job_id, index=0, content_type="image/png", size=len(png),
                            sha256=hashlib.sha256(png).hexdigest(), storage_key="k0", storage_uri="mem://k0",
                            stored_at=now))
    return out


# What the seed must produce (predict_time values: 1, 2, 3, 4, 10, 2, 1.5, 0.5 -> sorted, n=8).
EXPECTED_COUNTS = {"queued": 2, "submitting": 1, "running": 2, "storing": 1, "succeeded": 5, "failed": 3,
                   "canceled": 1}
EXPECTED_PREDICT = {"count": 8.0, "p50": 2.0, "p95": 7.9, "p99": 9.58}
EXPECTED_BILLED = 23.5  # all predict_time but the aborted 0.5
