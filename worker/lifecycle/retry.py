"""A job's retry policy: whether an attempt that just failed is tried again, and after how long.

Each attempt is billed, so the default is one attempt and nothing is re-run unless the job asked
(`"retry": {"max_attempts": 1-5, "on": [...]}`). A retry is a new attempt only once the previous one
is over: it replaces a decision that ends the attempt (the prediction is terminal, or the create was
refused and made nothing), never one that gives up on a prediction that may still run (a poison job,
a lost one). The replacement moves the job back to `queued` by the same compare-and-set, records the
finished attempt (job_attempts) in that transaction, clears the attempt's columns so the next one
needs a claim of its own (one claim, one create), and sends a delayed submit message: the backoff.

Why a delayed message for the backoff and not an immediate lane add: the lanes are ordered by
creation time, so a retried job would go straight back to the head of its lane. A countdown message
costs nothing while it waits; when it arrives, the submit step finds a queued job it was not
dispatched for and puts it back in its lane (`Action.ENQUEUE`). If the message is lost, the job's
next_check_at is the backoff's end, and the sweeper's audit of queued jobs puts it in its lane.
"""

from __future__ import annotations

import random
from datetime import datetime

from genqueue.models.attempts import attempt_deadline, new_attempt_values, record
from genqueue.models.status import (
    DEFAULT_RETRY_ON,
    PREDICTION_TERMINAL,
    RETRY_ON,
    ErrorCode,
    JobStatus,
    can_transition,
)
from genqueue.worker.lifecycle.decision import Decision, Deliveries, Next, Step
from genqueue.worker.lifecycle.snapshot import JobSnapshot

BACKOFF_BASE = 2.0  # seconds before the second attempt; doubled for each further one
BACKOFF_MAX = 60.0


def backoff(attempt: int, rand: float = 0.5) -> float:
    """Seconds to wait after attempt number `attempt` (1-based) failed: 2, 4, 8, 16 s (capped at 60),
    ±20 % by `rand` in [0, 1) so jobs that failed together do not come back together."""
    base = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (attempt - 1))
    return round(base * (0.8 + 0.4 * rand), 3)


def retryable_codes(on: list[str] | None) -> frozenset[ErrorCode]:
    names = on if on is not None else DEFAULT_RETRY_ON
    return frozenset(code for name in names for code in RETRY_ON.get(name, ()))


def _over(job: JobSnapshot, d: Decision) -> bool:
    """Whether the attempt is surely over: its prediction is terminal, or it never had one and no
    create can be in flight (the create was refused)."""
    prediction_status = d.values.get("prediction_status", job.prediction_status)
    if prediction_status in PREDICTION_TERMINAL:
        return True
    prediction_id = d.values.get("prediction_id", job.prediction_id)
    return prediction_id is None and "create_in_flight_until" in d.values and d.values["create_in_flight_until"] is None


def retry_instead(job: JobSnapshot, d: Decision, now: datetime, rand: float | None = None) -> Decision:
    """`d` unchanged, or, when it fails the job with an outcome its policy retries and attempts are
    left, the decision that queues the next attempt instead (same expected statuses and guards)."""
    if d.to is not JobStatus.FAILED or job.retries_left <= 0:
        return d
    if not all(can_transition(src, JobStatus.QUEUED) for src in d.expect):
        return d  # e.g. storing: the prediction succeeded and was paid for; its outputs are what failed
    code = d.values.get("error_code")
    if code is None or ErrorCode(code) not in retryable_codes(job.retry_on) or not _over(job, d):
        return d
    delay = backoff(job.attempt, random.random() if rand is None else rand)
    ended = {**job_columns(job), **d.values}
    deadline = attempt_deadline(job.deadline_seconds, job.deadline_at, job.created_at)
    values = {**new_attempt_values(now, deadline, delay), "attempt": job.attempt + 1,
              "retries_left": job.retries_left - 1}
    return Decision(
        expect=d.expect, to=JobStatus.QUEUED, values=values, guard=d.guard, deliveries=Deliveries.RESET,
        then=Next(Step.SUBMIT, delay),
        archive=record(job.id, job.attempt, JobStatus.FAILED.value, ended, now),
        log=f"attempt {job.attempt} failed code={code}; attempt {job.attempt + 1} in {delay:.1f}s",
    )


def job_columns(job: JobSnapshot) -> dict[str, object]:
    """The attempt's columns the snapshot knows (the decision's values override them)."""
    return {"prediction_id": job.prediction_id, "prediction_status": job.prediction_status,
            "submit_started_at": job.submit_started_at}
