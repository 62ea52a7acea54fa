"""What a decision is: the compare-and-set to write, the next message, and the side effects."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum, StrEnum
from typing import Any

from genqueue.models.jobs import finish_timings
from genqueue.models.status import ErrorCode, JobStatus
from genqueue.worker.lifecycle.snapshot import JobSnapshot


class Step(StrEnum):
    """The steps a job id is sent to (each is a Celery task; see `genqueue.worker.enqueue`)."""

    SUBMIT = "submit"
    POLL = "poll"
    STORE = "store"


@dataclass(frozen=True, slots=True)
class Next:
    """The follow-up after a step: nothing, or `step` again for this job in `countdown` seconds.
    `inline` (store only): copy the outputs right in this task instead of through the store queue."""

    step: Step | None = None
    countdown: float = 0.0
    inline: bool = False


NOTHING = Next()


class Deliveries(Enum):
    """What a write does to `deliveries`, the count of step starts that never reached an end: a job
    whose step keeps killing its worker (crash, OOM, time limit) reaches MAX_DELIVERIES and fails as
    `too_many_deliveries` instead of looping forever. Counted by claims and by the sweeper's re-sends
    of lost steps; any write that records an outcome resets it; a wait keeps it."""

    RESET = "reset"
    KEEP = "keep"
    COUNT = "count"


@dataclass(frozen=True, slots=True)
class Decision:
    """One compare-and-set: while the job is in one of `expect` (and every `guard` column still holds
    its value), write `values` and move it to `to` (None: status unchanged); then send `then`."""

    expect: tuple[JobStatus, ...]
    to: JobStatus | None = None
    values: dict[str, Any] = field(default_factory=dict)
    guard: dict[str, Any] = field(default_factory=dict)
    deliveries: Deliveries = Deliveries.RESET
    then: Next = NOTHING
    # A succeeded prediction's duration: shared with the fleet as the model's expected time.
    observed_duration: float | None = None
    log: str | None = None
    # 0008: the attempt this decision ends, to record in job_attempts with the write (a retry).
    archive: dict[str, Any] | None = None


# Rules every step shares.
MAX_DELIVERIES = 8
# A message that arrives this much before the job's next check time is a duplicate of a live chain
# (a sweeper re-send, a redelivery) and is dropped, keeping one chain of messages per job.
EARLY = timedelta(seconds=0.25)
MIN_CANCEL_AFTER = 5.0  # seconds: Replicate's floor for the Cancel-After header


def fail(job: JobSnapshot, code: ErrorCode, message: str, now: datetime,
         expect: tuple[JobStatus, ...] | None = None) -> Decision:
    return Decision(
        expect=expect or (job.status,), to=JobStatus.FAILED,
        values={"error_code": code.value, "error_message": message[:4000], "finished_at": now,
                "next_check_at": None, "create_in_flight_until": None, **finish_timings(job, now)},
        log=f"failed code={code.value}",
    )


def wait(job: JobSnapshot, step: Step, delay: float, now: datetime) -> Decision:
    """Run `step` again in `delay` seconds. The check time is recorded, so the sweeper sees nothing
    overdue and a duplicate message that arrives earlier is dropped: one job, one chain of messages."""
    return Decision(expect=(job.status,), values={"next_check_at": now + timedelta(seconds=delay)},
                    deliveries=Deliveries.KEEP, then=Next(step, delay))


def retry_delay() -> float:
    """How long a step waits before trying again after a transient failure with no hint (a database
    restart, a 5xx, a timeout): 0.5-4 s with full jitter, so a fleet does not retry in lock-step."""
    return random.uniform(0.5, 4.0)
