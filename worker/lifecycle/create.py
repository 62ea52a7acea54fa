"""Decisions around the create call, where duplicates are born.

Replicate has no idempotency key, so the dangerous moment is between sending the create and recording
its answer. Every create is preceded by a committed claim: `queued -> submitting`, or, for a job found
`submitting` whose create went unanswered, a re-claim guarded by the claim we read, so only the
delivery whose claim changed the row may send. A job found `submitting` means an answer may have been
lost: look the prediction up first and adopt it. While a claim's create may still be in flight
(`create_in_flight_until` ahead), nobody touches the job.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from genqueue.models.status import ErrorCode, JobStatus
from genqueue.worker.lifecycle.decision import (
    EARLY,
    MAX_DELIVERIES,
    MIN_CANCEL_AFTER,
    Decision,
    Deliveries,
    Next,
    Step,
    fail,
    wait,
)
from genqueue.worker.lifecycle.follow import observed
from genqueue.worker.lifecycle.policy import Policy
from genqueue.worker.lifecycle.retry import retry_instead
from genqueue.worker.lifecycle.snapshot import JobSnapshot, prediction_fields
from genqueue.worker.replicate.types import Prediction

# How far before our claim to look for a prediction whose create answer was lost (clock skew margin).
RECONCILE_MARGIN = timedelta(seconds=120)


class Action(StrEnum):
    ENQUEUE = "enqueue"  # a queued job reached by a message the dispatcher did not send: back to its lane
    RECONCILE = "reconcile"  # look for a prediction an unanswered create may have made, then create
    CREATE = "create"  # claim the job and send the create


def before_create(job: JobSnapshot, now: datetime, *, dispatched: bool = False) -> Decision | Action | None:
    """What a submit message should do with this job: None (drop it), a Decision to write and stop
    (fail, or wait for a create in flight), or an Action. `dispatched`: the message was sent by the
    dispatcher, which took a create token for it; any other message for a queued job (a retry, an
    old message) puts the job back in its lane instead, which is idempotent, so duplicates are harmless."""
    if job.status not in (JobStatus.QUEUED, JobStatus.SUBMITTING):
        return None  # already past this step (a duplicate message, or the sweeper raced us)
    if job.status is JobStatus.SUBMITTING and job.next_check_at is not None and now < job.next_check_at - EARLY:
        return None  # another chain owns the job until next_check_at
    if job.deliveries >= MAX_DELIVERIES:
        return fail(job, ErrorCode.POISON, f"gave up after {job.deliveries} attempts to submit", now)
    if job.status is JobStatus.QUEUED:
        if job.deadline_at is not None and now >= job.deadline_at:
            # Not retried even with "timeout": no attempt ran, and a fresh deadline would defeat the caller's.
            return fail(job, ErrorCode.DEADLINE_EXCEEDED, "deadline reached while queued", now)
        return Action.CREATE if dispatched else Action.ENQUEUE
    if job.create_in_flight_until is not None and now < job.create_in_flight_until:
        return wait(job, Step.SUBMIT, (job.create_in_flight_until - now).total_seconds(), now)
    return Action.RECONCILE


def reconcile_since(job: JobSnapshot) -> datetime:
    """Predictions created after this may be the one an unanswered create made."""
    return (job.submit_started_at or job.created_at) - RECONCILE_MARGIN


def claim(job: JobSnapshot, now: datetime, policy: Policy, claimant: str | None = None) -> Decision:
    """The committed claim that alone allows sending a create. `claimant`: the worker making it (its
    heartbeat id), so the window can be closed early if that worker dies (`models.heartbeats`)."""
    until = now + policy.create_window
    values = {"submit_started_at": now, "create_in_flight_until": until, "next_check_at": until,
              "claimed_by": claimant}
    if job.status is JobStatus.QUEUED:
        return Decision(expect=(JobStatus.QUEUED,), to=JobStatus.SUBMITTING, values=values,
                        deliveries=Deliveries.COUNT)
    # Re-claim only from exactly the state we reconciled: a concurrent delivery that claimed (or moved
    # the job) in between makes this match nothing.
    return Decision(expect=(JobStatus.SUBMITTING,), values=values, deliveries=Deliveries.COUNT,
                    guard={"submit_started_at": job.submit_started_at, "deliveries": job.deliveries})


def claimed(job: JobSnapshot, now: datetime, policy: Policy) -> JobSnapshot:
    """The job as the claim left it."""
    until = now + policy.create_window
    return job.replace(status=JobStatus.SUBMITTING, submit_started_at=now, create_in_flight_until=until,
                       next_check_at=until, deliveries=job.deliveries + 1)


def create_args(job: JobSnapshot, now: datetime, policy: Policy, expected: float | None) -> dict[str, Any]:
    """Everything of the create call but the input: target, deadline, Prefer: wait, webhook."""
    remaining = (job.deadline_at - now).total_seconds() if job.deadline_at else None
    return {
        "version": job.version if job.target == "version" else None,
        "model": job.model if job.target == "model" else None,
        "deployment": job.deployment if job.target == "deployment" else None,
        # Replicate aborts the prediction itself at the deadline (unbilled if not started).
        "cancel_after": max(MIN_CANCEL_AFTER, remaining) if remaining is not None else None,
        "wait": policy.create_wait(expected),
        **policy.follow.create_args(job.id),
    }


def created(job: JobSnapshot, p: Prediction, now: datetime, policy: Policy, expected: float | None,
            *, adopted: bool = False) -> Decision:
    """Record the prediction our create made (or, `adopted`, the one a lost answer made)."""
    values = {"prediction_get_url": p.urls_get, "prediction_cancel_url": p.urls_cancel, "submitted_at": now,
              "attempts": job.attempts + (0 if adopted else 1), "create_in_flight_until": None}
    if p.is_terminal:  # Prefer: wait, or an adopted prediction that already finished
        return observed(job, p, now, policy, expected, extra=values)
    delay = policy.follow.next_check(status=p.status, created_at=p.created_at, polls=0, expected=expected, now=now)
    return Decision(
        expect=(JobStatus.SUBMITTING,), to=JobStatus.RUNNING,
        values={**values, **prediction_fields(p), "next_check_at": now + timedelta(seconds=delay)},
        then=Next(Step.POLL, delay) if policy.follow.sends_polls else Next(),
        log=f"{'adopted' if adopted else 'created'} prediction={p.id} status={p.status}",
    )


def create_refused(job: JobSnapshot, status_code: int | None, message: str, now: datetime) -> Decision:
    """Replicate refused the create for good (4xx): nothing was created."""
    code = ErrorCode.INPUT_REJECTED if status_code == 422 else ErrorCode.REPLICATE_ERROR
    return retry_instead(job, fail(job, code, message, now, expect=(JobStatus.SUBMITTING,)), now)


def create_unanswered(job: JobSnapshot, *, maybe_sent: bool, delay: float, now: datetime) -> Decision:
    """A create that failed transiently. Surely never reached Replicate (connection refused, 429):
    back to `queued`, safe to create again. Ambiguous (timeout, 5xx): it may have made a prediction,
    so the next delivery reconciles before creating again; the create is no longer in flight."""
    check = {"next_check_at": now + timedelta(seconds=delay), "create_in_flight_until": None}
    if not maybe_sent:
        return Decision(expect=(JobStatus.SUBMITTING,), to=JobStatus.QUEUED, values=check,
                        guard={"submit_started_at": job.submit_started_at}, then=Next(Step.SUBMIT, delay))
    return Decision(expect=(JobStatus.SUBMITTING,), values={**check, "attempts": job.attempts + 1},
                    guard={"submit_started_at": job.submit_started_at}, deliveries=Deliveries.KEEP,
                    then=Next(Step.SUBMIT, delay))


def secrets_unavailable(job: JobSnapshot, message: str, now: datetime) -> Decision:
    return fail(job, ErrorCode.SECRETS, message, now)
