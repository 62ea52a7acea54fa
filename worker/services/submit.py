"""Create the prediction for a job, exactly once.

Replicate has no idempotency key, so the dangerous moment is between sending the create and
recording its answer. The job is claimed (`queued -> submitting`, committed) before the create is
sent; a job found in `submitting` later means an answer may have been lost, so we look the
prediction up by creation time, version and input digest and adopt it before ever creating again.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from core.crypto import SecretsError, decrypt_secrets
from models.base import utcnow
from models.jobs import finish_timings, transition
from models.status import ErrorCode, JobStatus
from models.tables import Job
from worker.replicate import PermanentError, Prediction, TransientError, input_digest
from worker.runtime import WorkerContext
from worker.services.observe import apply_terminal, prediction_fields
from worker.services.outcomes import DONE, Next, RetryLater, backoff

log = logging.getLogger(__name__)

# How far before our claim to look for a prediction whose create answer was lost (clock skew margin).
RECONCILE_MARGIN = timedelta(seconds=120)


def fail(session: Session, job: Job, src: JobStatus, code: str, message: str) -> Next:
    now = utcnow()
    transition(session, job.id, src, JobStatus.FAILED, error_code=code, error_message=message,
               finished_at=now, next_check_at=None, **finish_timings(job, now))
    log.info("job=%s failed code=%s", job.id, code)
    return DONE


def full_input(ctx: WorkerContext, job: Job) -> dict[str, Any]:
    return {**job.input_public, **decrypt_secrets(ctx.cipher, job.input_sealed)}


def submit(ctx: WorkerContext, job_id: str) -> Next:
    with ctx.sessions.begin() as session:
        job = session.get(Job, job_id)
        if job is None or job.status not in (JobStatus.QUEUED, JobStatus.SUBMITTING):
            return DONE  # already past this step (a duplicate message, or the sweeper raced us)
        now = utcnow()
        if job.deliveries >= ctx.settings.max_deliveries:
            return fail(session, job, JobStatus(job.status), ErrorCode.POISON,
                        f"gave up after {job.deliveries} attempts to submit")
        if job.deadline_at and now >= job.deadline_at and job.status == JobStatus.QUEUED:
            return fail(session, job, JobStatus.QUEUED, ErrorCode.DEADLINE_EXCEEDED, "deadline reached while queued")
        try:
            payload = full_input(ctx, job)
        except SecretsError as exc:
            return fail(session, job, JobStatus(job.status), ErrorCode.SECRETS, str(exc))
        if job.status == JobStatus.SUBMITTING:
            adopted = _reconcile(ctx, session, job, payload)
            if adopted is not None:
                return adopted
            _wait_for_budget(ctx)
        else:
            _wait_for_budget(ctx)
            if not transition(session, job.id, JobStatus.QUEUED, JobStatus.SUBMITTING, submit_started_at=now,
                              deliveries=job.deliveries + 1, next_check_at=now):
                return DONE
            job.submit_started_at = now
    # The claim is committed: from here on a crash leaves `submitting`, which means "look it up first".
    return _create(ctx, job, payload)


def _wait_for_budget(ctx: WorkerContext) -> None:
    paused = max(ctx.breaker.open_for(), ctx.limiter.paused_for("create"))
    if paused:
        raise RetryLater(paused, "creates paused")
    wait = ctx.limiter.acquire("create")
    if wait > 0:
        ctx.recorder.limiter_wait("create", wait)
        raise RetryLater(wait, "create budget")


def _reconcile(ctx: WorkerContext, session: Session, job: Job, payload: dict[str, Any]) -> Next | None:
    """A create may have landed without us recording it: adopt that prediction if it exists."""
    since = (job.submit_started_at or job.created_at) - RECONCILE_MARGIN
    wait = ctx.limiter.acquire("read")
    if wait > 0:
        raise RetryLater(wait, "read budget")
    try:
        found = ctx.replicate.find_created(created_after=since, version=job.version, model=job.model,
                                           input_digest=input_digest(payload))
    except TransientError as exc:
        raise RetryLater(exc.retry_after or backoff(job.deliveries), "reconcile lookup failed") from None
    if found is None:
        log.info("job=%s no prediction found for an unanswered create; creating again", job.id)
        if job.deliveries >= ctx.settings.max_deliveries:
            return fail(session, job, JobStatus.SUBMITTING, ErrorCode.POISON, "too many create attempts")
        job.deliveries += 1
        return None
    log.info("job=%s adopted prediction=%s whose create answer was lost", job.id, found.id)
    return _record(ctx, session, job, found)


def _create(ctx: WorkerContext, job: Job, payload: dict[str, Any]) -> Next:
    remaining = (job.deadline_at - utcnow()).total_seconds() if job.deadline_at else None
    try:
        prediction = ctx.replicate.create(
            input=payload,
            version=job.version if job.target == "version" else None,
            model=job.model if job.target == "model" else None,
            deployment=job.deployment if job.target == "deployment" else None,
            cancel_after=max(5.0, remaining) if remaining is not None else None,
            wait=ctx.settings.create_wait_seconds or None,
        )
    except TransientError as exc:
        with ctx.sessions.begin() as session:
            if exc.status_code == 429:
                ctx.limiter.pause("create", exc.retry_after or 1.0)
            elif exc.status_code and exc.status_code >= 500:
                ctx.breaker.failure()
            if not exc.request_sent_maybe:
                # Surely never reached Replicate (connection refused, 429): safe to create again later.
                transition(session, job.id, JobStatus.SUBMITTING, JobStatus.QUEUED, deliveries=0)
            else:
                session.execute(update(Job).where(Job.id == job.id).values(attempts=Job.attempts + 1))
        delay = exc.retry_after if exc.retry_after is not None else backoff(job.deliveries)
        raise RetryLater(delay, f"create transient {exc.status_code}") from None
    except PermanentError as exc:
        code = ErrorCode.INPUT_REJECTED if exc.status_code == 422 else ErrorCode.REPLICATE_ERROR
        with ctx.sessions.begin() as session:
            return fail(session, job, JobStatus.SUBMITTING, code, str(exc))
    ctx.breaker.success()
    with ctx.sessions.begin() as session:
        return _record(ctx, session, job, prediction, created=True)


def _record(ctx: WorkerContext, session: Session, job: Job, p: Prediction, created: bool = False) -> Next:
    now = utcnow()
    attempts = job.attempts + 1 if created else job.attempts
    base = {"prediction_get_url": p.urls_get, "prediction_cancel_url": p.urls_cancel, "submitted_at": now,
            "attempts": attempts}
    job.submitted_at = now
    if p.is_terminal:
        transition(session, job.id, JobStatus.SUBMITTING, JobStatus.RUNNING, **base, **prediction_fields(p))
        return apply_terminal(session, job, JobStatus.RUNNING, p, now)
    delay = first_poll_delay(ctx, job, p)
    ok = transition(session, job.id, JobStatus.SUBMITTING, JobStatus.RUNNING, **base, **prediction_fields(p),
                    deliveries=0, next_check_at=now + timedelta(seconds=delay))
    if not ok:
        return DONE
    log.info("job=%s created prediction=%s status=%s", job.id, p.id, p.status)
    return Next("poll", delay)


def first_poll_delay(ctx: WorkerContext, job: Job, p: Prediction) -> float:
    """When this model's predictions usually finish (observed), else the configured initial delay."""
    expected = ctx.durations.expected(job.model)
    if expected is None:
        return ctx.settings.poll_initial_delay
    elapsed = (utcnow() - p.created_at).total_seconds() if p.created_at else 0.0
    # 5% late on purpose: one GET just after the finish beats two GETs around it.
    return max(0.1, min(ctx.settings.poll_max_delay, expected * 1.05 - elapsed + 0.05))
