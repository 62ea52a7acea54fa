"""Record what a prediction reports on its job row: one place for submit (Prefer: wait) and poll."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from genqueue.models.jobs import finish_timings, transition
from genqueue.models.status import ErrorCode, JobStatus, job_status_for_prediction
from genqueue.models.tables import Job
from genqueue.worker.replicate import Prediction
from genqueue.worker.services.outcomes import DONE, Next

log = logging.getLogger(__name__)


def output_refs(output: Any) -> list[str] | None:
    """The file references in a prediction's output: a URL, a list of URLs or data: URIs."""
    if isinstance(output, str) and output:
        return [output]
    if isinstance(output, list) and output and all(isinstance(o, str) and o for o in output):
        return list(output)
    return None


def duration(p: Prediction) -> float | None:
    if p.total_time is not None:
        return p.total_time
    if p.created_at and p.completed_at:
        return (p.completed_at - p.created_at).total_seconds()
    return None


def prediction_fields(p: Prediction) -> dict[str, Any]:
    return {
        "prediction_id": p.id,
        "prediction_status": p.status,
        "prediction_created_at": p.created_at,
        "prediction_started_at": p.started_at,
        "completed_at": p.completed_at,
        "predict_time": p.predict_time,
        "total_time": p.total_time,
    }


def apply_terminal(session: Session, job: Job, src: JobStatus, p: Prediction, now: datetime,
                   extra: dict[str, Any] | None = None) -> Next:
    """Move a job whose prediction is terminal to storing / failed / canceled, in one UPDATE (with
    `extra` columns, e.g. the create's own fields). Returns the follow-up."""
    fields = prediction_fields(p)
    fields["detected_at"] = now
    for k, v in fields.items():
        setattr(job, k, v)  # so the derived timings see the new values
    dst = job_status_for_prediction(p.status)
    code: str | None = None
    message: str | None = None
    refs = None
    if dst is JobStatus.STORING:
        refs = output_refs(p.output)
        if refs is None:
            dst = JobStatus.FAILED
            if p.data_removed:
                code, message = ErrorCode.OUTPUT_EXPIRED, "outputs were removed by Replicate before we copied them"
            else:
                code, message = ErrorCode.OUTPUT_INVALID, "prediction output holds no file reference"
    elif dst is JobStatus.FAILED:
        deadline_hit = job.deadline_at is not None and now >= job.deadline_at
        if p.status == "aborted":
            code = ErrorCode.DEADLINE_EXCEEDED if deadline_hit else ErrorCode.PREDICTION_ABORTED
            message = "prediction aborted before it started" + (" (deadline reached)" if deadline_hit else "")
        else:
            code, message = ErrorCode.PREDICTION_FAILED, (p.error or "prediction failed")[:4000]
    elif dst is JobStatus.CANCELED and job.cancel_requested_at is None:
        deadline_hit = job.deadline_at is not None and now >= job.deadline_at
        if deadline_hit:
            dst, code = JobStatus.FAILED, ErrorCode.DEADLINE_EXCEEDED
            message = "deadline reached; canceled on Replicate"
        else:
            code, message = ErrorCode.PREDICTION_CANCELED, "prediction was canceled on Replicate"
    values: dict[str, Any] = dict(fields, error_code=code, error_message=message, deliveries=0, **(extra or {}))
    if dst is JobStatus.STORING:
        values.update(output_refs=refs, next_check_at=now)
    else:
        values.update(finished_at=now, next_check_at=None, **finish_timings(job, now))
    if not transition(session, job.id, src, dst, **values):
        return DONE
    log.info("job=%s prediction=%s %s -> %s predict_time=%s", job.id, p.id, p.status, dst.value, p.predict_time)
    if dst is not JobStatus.STORING:
        return DONE
    job.status, job.output_refs = dst.value, refs
    return Next("store", job=job)
