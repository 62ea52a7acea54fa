"""Decisions of the store step: copying a succeeded prediction's outputs into object storage."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from genqueue.models.jobs import finish_timings
from genqueue.models.status import ErrorCode, JobStatus
from genqueue.worker.lifecycle.decision import MAX_DELIVERIES, Decision, Deliveries, Next, Step, fail
from genqueue.worker.lifecycle.snapshot import JobSnapshot

# Replicate deletes API predictions' files an hour after completion; past that, retrying is pointless.
RETENTION = timedelta(hours=1)


class CopyFailure(StrEnum):
    EXPIRED = "expired"  # the file answered 404/403
    REFUSED = "refused"  # outside the allow-list, too large, a private address...
    TRANSIENT = "transient"  # the download or the storage write failed for now


def begin() -> Decision:
    """A store delivery starts: counted, so outputs that kill their worker end as poison."""
    return Decision(expect=(JobStatus.STORING,), deliveries=Deliveries.COUNT)


def poisoned(job: JobSnapshot, now: datetime) -> Decision | None:
    """After `begin` (this run counted already)."""
    if job.deliveries > MAX_DELIVERIES:
        return fail(job, ErrorCode.POISON, "gave up after repeated storage attempts", now)
    return None


def past_retention(job: JobSnapshot, now: datetime) -> bool:
    return job.completed_at is not None and now - job.completed_at > RETENTION


def copy_failed(job: JobSnapshot, failure: CopyFailure, message: str, now: datetime, *,
                removed: bool, delay: float) -> Decision:
    """An output could not be copied. `removed`: Replicate says the prediction's data is gone (only
    asked after a 404/403: a file merely not there yet, CDN lag, is retried)."""
    if failure is CopyFailure.REFUSED:
        return fail(job, ErrorCode.OUTPUT_REFUSED, message, now)
    if failure is CopyFailure.EXPIRED and removed:
        return fail(job, ErrorCode.OUTPUT_EXPIRED, message, now)
    if past_retention(job, now):
        return fail(job, ErrorCode.OUTPUT_EXPIRED,
                    f"outputs could not be copied before Replicate's retention ended: {message}", now)
    # A handled failure is not a crash: the delivery counter restarts.
    return Decision(expect=(JobStatus.STORING,), values={"next_check_at": now + timedelta(seconds=delay)},
                    then=Next(Step.STORE, delay))


def stored(job: JobSnapshot, now: datetime) -> Decision:
    """Every output is copied: the job succeeded."""
    return Decision(expect=(JobStatus.STORING,), to=JobStatus.SUCCEEDED,
                    values={"finished_at": now, "next_check_at": None, "error_code": None, "error_message": None,
                            **finish_timings(job, now)},
                    log=f"succeeded outputs={len(job.output_refs or [])} "
                        f"e2e={(now - job.created_at).total_seconds():.3f}s")

