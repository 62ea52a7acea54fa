"""Decisions of the store step: copying a succeeded prediction's outputs into object storage."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from enum import StrEnum

from genqueue.models.jobs import finish_timings
from genqueue.models.status import ErrorCode, JobStatus
from genqueue.worker.lifecycle.decision import MAX_DELIVERIES, Decision, Deliveries, Next, Step, fail
from genqueue.worker.lifecycle.snapshot import JobSnapshot

# Replicate deletes API predictions' files an hour after completion; past that, retrying is pointless.
RETENTION = timedelta(hours=1)
# Our object storage failing (S3 away, disk full) is waited out, not a reason to drop paid outputs:
# the copy is retried until the job's deadline. Each retry downloads the output again, so the wait
# grows with how long the copy has been failing: a tenth of it (a job is copied at most ~10 % of the
# outage after storage is back), at least the usual jittered retry delay, at most MAX_STORAGE_DELAY.
STORAGE_BACKOFF = 0.1
MAX_STORAGE_DELAY = 30.0


class CopyFailure(StrEnum):
    EXPIRED = "expired"  # the file answered 404/403
    REFUSED = "refused"  # outside the allow-list, too large, a private address...
    TRANSIENT = "transient"  # the download failed for now (a storage failure: `storage_failed`)


# A running copy holds the job this long: the sweeper re-sends a step 2 s overdue when its queue is
# empty, and a copy in progress is not in the queue. Copies take well under a second; one that dies
# with its worker is re-sent this long (plus a sweep) after it started.
STORE_LEASE = timedelta(seconds=15)


def begin(now: datetime) -> Decision:
    """A store delivery starts: counted, so outputs that kill their worker end as poison; and its
    check time moves to the end of the lease, so a copy in progress is not taken for lost."""
    return Decision(expect=(JobStatus.STORING,), values={"next_check_at": now + STORE_LEASE},
                    deliveries=Deliveries.COUNT)


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
    return _retry(now, delay)


def storage_failed(job: JobSnapshot, reason: str, detail: str, now: datetime, *, delay: float) -> Decision:
    """Object storage refused an output (S3 away, disk full). `reason` is the cause without the bucket
    or folder (the job's error may be shown to any key that reads it); `detail` is the whole error, for
    the log. Retried while the job's deadline and Replicate's retention allow, then `storage_error`."""
    end = _storage_give_up(job)
    if end is not None and now >= end[0]:
        return fail(job, ErrorCode.STORAGE_ERROR, f"outputs could not be stored before {end[1]}: {reason}", now)
    failing = (now - (job.detected_at or now)).total_seconds()
    delay = max(delay, min(MAX_STORAGE_DELAY, failing * STORAGE_BACKOFF))
    if end is not None:  # one last try right at the deadline rather than a wait past it
        delay = min(delay, (end[0] - now).total_seconds())
    return replace(_retry(now, delay), log=f"storage failed, copy retried in {delay:.1f}s: {detail}")


def _storage_give_up(job: JobSnapshot) -> tuple[datetime, str] | None:
    """When a failing storage is given up on, and why: the earlier of the deadline and retention."""
    ends = []
    if job.deadline_at is not None:
        ends.append((job.deadline_at, "the job's deadline"))
    if job.completed_at is not None:
        ends.append((job.completed_at + RETENTION, "Replicate's retention ended"))
    return min(ends, key=lambda e: e[0]) if ends else None


def _retry(now: datetime, delay: float) -> Decision:
    # A handled failure is not a crash: the delivery counter restarts.
    return Decision(expect=(JobStatus.STORING,), values={"next_check_at": now + timedelta(seconds=delay)},
                    then=Next(Step.STORE, delay))


def stored(job: JobSnapshot, now: datetime) -> Decision:
    """Every output is copied: the job succeeded."""
    return Decision(expect=(JobStatus.STORING,), to=JobStatus.SUCCEEDED,
                    # The sealed secrets go in the same compare-and-set (nothing can need them after a
                    # success; a failed or canceled job keeps them for a replay: models/retention.py).
                    values={"finished_at": now, "next_check_at": None, "error_code": None, "error_message": None,
                            "input_sealed": None, **finish_timings(job, now)},
                    log=f"succeeded outputs={len(job.output_refs or [])} "
                        f"e2e={(now - job.created_at).total_seconds():.3f}s")

