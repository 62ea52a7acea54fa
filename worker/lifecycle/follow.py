"""Decisions while a prediction runs: when to look, what a look (poll, push, create answer) means."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum

from genqueue.models.jobs import finish_timings
from genqueue.models.status import PREDICTION_TERMINAL, ErrorCode, JobStatus, job_status_for_prediction
from genqueue.worker.lifecycle.decision import EARLY, MAX_DELIVERIES, MIN_CANCEL_AFTER, Decision, Next, Step, fail
from genqueue.worker.lifecycle.policy import Policy
from genqueue.worker.lifecycle.retry import retry_instead
from genqueue.worker.lifecycle.snapshot import JobSnapshot, prediction_fields
from genqueue.worker.replicate.types import Prediction

DEADLINE_GRACE = timedelta(seconds=2)  # clock skew and Replicate's own reaction time


class Look(StrEnum):
    GET = "get"  # read the prediction
    CANCEL = "cancel"  # cancel it on Replicate (a user asked, or the deadline passed), then read it


def before_look(job: JobSnapshot, now: datetime) -> Decision | Look | None:
    """What a poll message should do: None (drop it), a Decision (give up), or which call to make."""
    if job.status is not JobStatus.RUNNING or not job.prediction_get_url:
        return None
    if job.next_check_at and now < job.next_check_at - EARLY and job.cancel_requested_at is None:
        # Another poll chain already set a later check time: this message is a duplicate (sweeper
        # re-send, redelivery). Dropping it keeps one chain per job and one GET per interval.
        return None
    if job.deliveries >= MAX_DELIVERIES:
        return fail(job, ErrorCode.POISON, "gave up after repeated poll crashes", now)
    wants_cancel = job.cancel_requested_at is not None or past_replicate_deadline(job, now)
    if wants_cancel and job.prediction_status not in PREDICTION_TERMINAL:
        return Look.CANCEL
    return Look.GET


def past_replicate_deadline(job: JobSnapshot, now: datetime) -> bool:
    """Whether our own cancel is due for a job with a deadline. The create sent it as `Cancel-After`
    (at least 5 s), so Replicate itself aborts the prediction (not started: `aborted`, not billed) or
    cancels it (running) at that moment, and the next look sees that. Our cancel is the backup for
    when that has not happened DEADLINE_GRACE later; canceling first would only race Replicate's own
    abort and turn an honest `aborted` into `canceled`."""
    if job.deadline_at is None:
        return False
    theirs = job.deadline_at
    if job.prediction_created_at is not None:
        theirs = max(theirs, job.prediction_created_at + timedelta(seconds=MIN_CANCEL_AFTER))
    return now >= theirs + DEADLINE_GRACE


def observed(job: JobSnapshot, p: Prediction, now: datetime, policy: Policy, expected: float | None,
             extra: Mapping[str, object] | None = None) -> Decision:
    """What a look at the job's prediction means: still running (look again later), or terminal
    (store its outputs, or fail/cancel the job). `extra`: columns the caller writes with it."""
    if not p.is_terminal:
        delay = policy.follow.next_check(status=p.status, created_at=p.created_at, polls=job.polls,
                                         expected=expected, now=now)
        return Decision(expect=(job.status,),
                        values={**prediction_fields(p), **(extra or {}), "polls": job.polls + 1,
                                "next_check_at": now + timedelta(seconds=delay)},
                        then=Next(Step.POLL, delay) if policy.follow.sends_polls else Next())
    return terminal(job, p, now, policy, extra)


def terminal(job: JobSnapshot, p: Prediction, now: datetime, policy: Policy,
             extra: Mapping[str, object] | None = None) -> Decision:
    """A finished prediction: succeeded -> storing (its file references recorded), else failed or
    canceled with the reason."""
    fields = {**prediction_fields(p), "detected_at": now}
    seen = job.replace(**{k: v for k, v in fields.items() if k in _TIMELINE})  # what the timings read
    dst, code, message = _outcome(job, p, now)
    refs = output_refs(p.output) if dst is JobStatus.STORING else None
    if dst is JobStatus.STORING and refs is None:
        dst = JobStatus.FAILED
        if p.data_removed:
            code, message = ErrorCode.OUTPUT_EXPIRED, "outputs were removed by Replicate before we copied them"
        else:
            code, message = ErrorCode.OUTPUT_INVALID, "prediction output holds no file reference"
    values: dict[str, object] = {**fields, "error_code": code.value if code else None,
                                 "error_message": message, **(extra or {})}
    if dst is JobStatus.STORING:
        values.update(output_refs=refs, next_check_at=now)
        then = Next(Step.STORE, inline=policy.follow.store_inline)
    else:
        values.update(finished_at=now, next_check_at=None, **finish_timings(seen, now))
        then = Next()
    return retry_instead(job, Decision(
        expect=(job.status,), to=dst, values=values, then=then,
        observed_duration=duration(p) if p.status == "succeeded" else None,
        log=f"prediction={p.id} {p.status} -> {dst.value} predict_time={p.predict_time}"), now)


_TIMELINE = frozenset({"prediction_created_at", "prediction_started_at", "completed_at", "detected_at"})


def _outcome(job: JobSnapshot, p: Prediction, now: datetime) -> tuple[JobStatus, ErrorCode | None, str | None]:
    dst = job_status_for_prediction(p.status)
    deadline_hit = job.deadline_at is not None and now >= job.deadline_at
    if dst is JobStatus.FAILED and p.status == "aborted":
        reason = "prediction aborted before it started" + (" (deadline reached)" if deadline_hit else "")
        return dst, ErrorCode.DEADLINE_EXCEEDED if deadline_hit else ErrorCode.PREDICTION_ABORTED, reason
    if dst is JobStatus.FAILED:
        return dst, ErrorCode.PREDICTION_FAILED, (p.error or "prediction failed")[:4000]
    if dst is JobStatus.CANCELED and job.cancel_requested_at is None:
        if deadline_hit:
            return JobStatus.FAILED, ErrorCode.DEADLINE_EXCEEDED, "deadline reached; canceled on Replicate"
        return dst, ErrorCode.PREDICTION_CANCELED, "prediction was canceled on Replicate"
    return dst, None, None


def pushed(job: JobSnapshot | None, p: Prediction, now: datetime, policy: Policy) -> Decision | None:
    """A finished prediction Replicate pushed (webhook). Applied only to a running job following
    exactly this prediction: a push for an older prediction of the job, for a job already past
    `running` (a duplicate push), or one that beat the create's own answer (the first look will see
    the same result) is dropped."""
    if not p.is_terminal or job is None or job.status is not JobStatus.RUNNING or job.prediction_id != p.id:
        return None
    return terminal(job, p, now, policy)


def read_refused(job: JobSnapshot, status_code: int | None, message: str, now: datetime) -> Decision:
    """Replicate answered a read with a permanent error."""
    if status_code == 404:
        return fail(job, ErrorCode.LOST, "prediction not found on Replicate", now)
    return fail(job, ErrorCode.REPLICATE_ERROR, message, now)


def output_refs(output: object) -> list[str] | None:
    """The file references in a prediction's output: a URL, a list of URLs or data: URIs."""
    if isinstance(output, str) and output:
        return [output]
    if isinstance(output, list) and output and all(isinstance(o, str) and o for o in output):
        return list(output)
    return None


def duration(p: Prediction) -> float | None:
    """How long the prediction took, as the schedule of the next ones should expect."""
    if p.total_time is not None:
        return p.total_time
    if p.created_at and p.completed_at:
        return (p.completed_at - p.created_at).total_seconds()
    return None
