"""Create the prediction for a job, exactly once.

Replicate has no idempotency key, so the dangerous moment is between sending the create and
recording its answer. Every create is preceded by a committed compare-and-set *claim*:
`queued -> submitting`, or, for a job already `submitting` whose earlier create went unanswered, a
re-claim conditioned on the claim time we read. Only the delivery whose claim changed the row may
send a create. A job found in `submitting` means an answer may have been lost, so we first look the
prediction up by creation time, version and input digest and adopt it; and while a claim is young
enough that its create may still be in flight, nobody else touches the job.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from genqueue.core.crypto import SecretsError, decrypt_secrets
from genqueue.models.base import utcnow
from genqueue.models.jobs import finish_timings, transition
from genqueue.models.status import ErrorCode, JobStatus
from genqueue.models.tables import Job
from genqueue.worker.replicate import PermanentError, Prediction, ReplicateError, TransientError, input_digest
from genqueue.worker.runtime import WorkerContext
from genqueue.worker.services.observe import apply_terminal, duration, prediction_fields
from genqueue.worker.services.outcomes import DONE, Next, RetryLater, backoff, with_webhooks

log = logging.getLogger(__name__)
MIN_CANCEL_AFTER = 5.0  # seconds: Replicate's floor for the Cancel-After header

# How far before our claim to look for a prediction whose create answer was lost (clock skew margin).
RECONCILE_MARGIN = timedelta(seconds=120)
# Pauses between attempts to record a create's answer while the database is unavailable (~15 s).
RECORD_RETRY_PAUSES = (0.5, 1.0, 2.0, 4.0, 8.0)
# A message that arrives this much before the job's next check time is a duplicate of a live chain.
EARLY = timedelta(seconds=0.25)


def fail(session: Session, job: Job, src: JobStatus, code: str, message: str) -> Next:
    now = utcnow()
    transition(session, job.id, src, JobStatus.FAILED, error_code=code, error_message=message,
               finished_at=now, next_check_at=None, **finish_timings(job, now))
    log.info("job=%s failed code=%s", job.id, code)
    return DONE


def full_input(ctx: WorkerContext, job: Job) -> dict[str, Any]:
    return {**job.input_public, **decrypt_secrets(ctx.cipher, job.input_sealed)}


def create_window(ctx: WorkerContext) -> timedelta:
    """Longest a create call can be in flight (read timeout, Prefer: wait, margin)."""
    wait = max(ctx.settings.create_wait_seconds, ctx.settings.create_wait_auto_max + 2)
    return timedelta(seconds=ctx.settings.replicate_timeout + wait + 15)


def create_wait(ctx: WorkerContext, job: Job) -> int | None:
    """Seconds of Prefer: wait for this create: fixed, or automatic for models known to be quick."""
    s = ctx.settings
    if s.create_wait_seconds:
        return s.create_wait_seconds
    if not s.create_wait_auto_max:
        return None
    expected = ctx.durations.expected(job.model)
    if expected is None or expected > s.create_wait_auto_max:
        return None
    return min(60, math.ceil(expected * 1.2) + 1)


def webhook_args(ctx: WorkerContext, job: Job) -> dict[str, Any]:
    """Ask Replicate to push the finished prediction to our API (only the terminal event: the others
    would be requests we don't need)."""
    base = ctx.settings.webhook_url
    if not base:
        return {}
    return {"webhook": f"{base}/v1/replicate/webhook?job={job.id}", "webhook_events_filter": ["completed"]}


def submit(ctx: WorkerContext, job_id: str) -> Next:
    try:
        return _submit(ctx, job_id)
    except RetryLater as later:
        # Record when this chain will look again: the sweeper then sees nothing overdue and a
        # duplicate message that arrives earlier is dropped, so one job has one retry chain.
        with ctx.sessions.begin() as session:
            session.execute(
                update(Job).where(Job.id == job_id, Job.status.in_([JobStatus.QUEUED, JobStatus.SUBMITTING]))
                .values(next_check_at=utcnow() + timedelta(seconds=later.delay))
                .execution_options(synchronize_session=False)
            )
        raise


def _submit(ctx: WorkerContext, job_id: str) -> Next:
    with ctx.sessions.begin() as session:
        job = session.get(Job, job_id)
        if job is None or job.status not in (JobStatus.QUEUED, JobStatus.SUBMITTING):
            return DONE  # already past this step (a duplicate message, or the sweeper raced us)
        # Detached: changes to this object are never flushed; every write is a compare-and-set.
        session.expunge(job)
        now = utcnow()
        if job.next_check_at is not None and now < job.next_check_at - EARLY:
            return DONE  # another chain owns this job until next_check_at
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
            in_flight_until = _create_in_flight_until(ctx, job)
            if in_flight_until is not None and now < in_flight_until:
                raise RetryLater((in_flight_until - now).total_seconds(), "a create may still be in flight")
            adopted = _reconcile(ctx, session, job, payload)
            if adopted is not None:
                return adopted
        _wait_for_budget(ctx)
        if not _claim(session, job, now, ctx):
            return DONE
    # The claim is committed: from here on a crash leaves `submitting`, which means "look it up first".
    return _create(ctx, job, payload)


def _create_in_flight_until(ctx: WorkerContext, job: Job) -> datetime | None:
    """While the latest claim's create has not answered (submitted_at older than the claim) and is
    younger than the create window, it may still land: nobody else may reconcile or create."""
    claimed = job.submit_started_at
    if claimed is None or (job.submitted_at is not None and job.submitted_at >= claimed):
        return None
    return claimed + create_window(ctx)


def _claim(session: Session, job: Job, now: datetime, ctx: WorkerContext) -> bool:
    values: dict[str, Any] = {"submit_started_at": now, "deliveries": job.deliveries + 1,
                              "next_check_at": now + create_window(ctx), "updated_at": now}
    if job.status == JobStatus.QUEUED:
        ok = transition(session, job.id, JobStatus.QUEUED, JobStatus.SUBMITTING, **values)
    else:
        # Re-claim only from exactly the state we reconciled: a concurrent delivery that claimed
        # (or moved the job) in between makes this match nothing.
        stmt = (update(Job).where(Job.id == job.id, Job.status == JobStatus.SUBMITTING,
                                  Job.submit_started_at == job.submit_started_at,
                                  Job.deliveries == job.deliveries)
                .values(**values).execution_options(synchronize_session=False))
        ok = bool(session.execute(stmt).rowcount)  # type: ignore[attr-defined]
    if ok:
        job.submit_started_at, job.deliveries = now, job.deliveries + 1
    return ok


def _wait_for_budget(ctx: WorkerContext) -> None:
    wait = ctx.limiter.acquire("create", also_blocked_by=(ctx.breaker.open_key,))
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
        log.info("job=%s no prediction found for an unanswered create", job.id)
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
            cancel_after=max(MIN_CANCEL_AFTER, remaining) if remaining is not None else None,
            wait=create_wait(ctx, job),
            **webhook_args(ctx, job),
        )
    except TransientError as exc:
        _after_transient(ctx, job, exc)
        delay = exc.retry_after if exc.retry_after is not None else backoff(job.deliveries)
        raise RetryLater(delay, f"create transient {exc.status_code}") from None
    except PermanentError as exc:
        code = ErrorCode.INPUT_REJECTED if exc.status_code == 422 else ErrorCode.REPLICATE_ERROR
        with ctx.sessions.begin() as session:
            return fail(session, job, JobStatus.SUBMITTING, code, str(exc))
    ctx.breaker.success()
    return _record_answer(ctx, job, prediction)


def _record_answer(ctx: WorkerContext, job: Job, p: Prediction) -> Next:
    """Record what the create answered. Until this commits, the paid prediction exists only in this
    thread's memory: a database error here is retried in place for a few seconds. Left to a new
    message, the retry would find the claim's create window still open and drop itself, and the
    sweeper would adopt the prediction minutes later (W1 with PostgreSQL out of connections: 180 s).
    A last failure propagates: the task retries, and the reconcile above adopts the prediction."""
    attempts = job.attempts  # _record counts this create on `job`: every try starts from the same count
    for attempt, pause in enumerate(RECORD_RETRY_PAUSES):
        try:
            return _record_once(ctx, job, p, again=attempt > 0)
        except (OperationalError, InterfaceError) as exc:
            log.warning("job=%s prediction=%s created; recording it failed (%s), again in %.1fs",
                        job.id, p.id, type(exc).__name__, pause)
            job.attempts = attempts
            time.sleep(pause)
    return _record_once(ctx, job, p, again=True)


def _record_once(ctx: WorkerContext, job: Job, p: Prediction, again: bool) -> Next:
    with ctx.sessions.begin() as session:
        if again:  # did an earlier attempt's COMMIT land though its reply was lost? Then it is ours.
            row = session.execute(select(Job.prediction_id, Job.status).where(Job.id == job.id)).one_or_none()
            if row is not None and row.prediction_id == p.id:
                if row.status == JobStatus.RUNNING:
                    return Next("poll", first_poll_delay(ctx, job, p))
                return Next("store") if row.status == JobStatus.STORING else DONE
        return _record(ctx, session, job, p, created=True)


def _after_transient(ctx: WorkerContext, job: Job, exc: TransientError) -> None:
    if exc.status_code == 429:
        ctx.limiter.pause("create", exc.retry_after or 1.0)
    elif exc.status_code and exc.status_code >= 500:
        ctx.breaker.failure()
    now = utcnow()
    with ctx.sessions.begin() as session:
        if not exc.request_sent_maybe:
            # Surely never reached Replicate (connection refused, 429): safe to create again later.
            transition(session, job.id, JobStatus.SUBMITTING, JobStatus.QUEUED, deliveries=0)
        else:
            # Ambiguous: the create answered (with an error), so it is no longer in flight; the next
            # delivery reconciles before creating again. submitted_at marks "the create answered".
            session.execute(update(Job).where(Job.id == job.id, Job.submit_started_at == job.submit_started_at)
                            .values(attempts=Job.attempts + 1, submitted_at=now)
                            .execution_options(synchronize_session=False))


def _record(ctx: WorkerContext, session: Session, job: Job, p: Prediction, created: bool = False) -> Next:
    now = utcnow()
    attempts = job.attempts + 1 if created else job.attempts
    base = {"prediction_get_url": p.urls_get, "prediction_cancel_url": p.urls_cancel, "submitted_at": now,
            "attempts": attempts}
    job.submitted_at = now
    if p.is_terminal:  # Prefer: wait, or an adopted prediction that already finished
        if p.status == "succeeded":
            ctx.durations.observe(job.model, duration(p))
        job.attempts = attempts
        # A finished prediction needs no cancel, so a lost race here leaves nothing running unowned.
        return apply_terminal(session, job, JobStatus.SUBMITTING, p, now, extra=base)
    delay = first_poll_delay(ctx, job, p)
    if transition(session, job.id, JobStatus.SUBMITTING, JobStatus.RUNNING, **base, **prediction_fields(p),
                  deliveries=0, next_check_at=now + timedelta(seconds=delay)):
        log.info("job=%s created prediction=%s status=%s", job.id, p.id, p.status)
        return Next("poll", delay)
    if created:
        _orphan(ctx, job, p)
    return DONE


def _orphan(ctx: WorkerContext, job: Job, p: Prediction) -> None:
    """Our create landed but the job moved on without us (should not happen given the claims):
    never leave a paid prediction running unowned."""
    log.warning("job=%s prediction=%s created but the job is no longer ours; canceling it", job.id, p.id)
    if p.urls_cancel and not p.is_terminal:
        try:
            ctx.replicate.cancel(p.urls_cancel)
        except ReplicateError:
            log.warning("job=%s could not cancel orphan prediction=%s", job.id, p.id)


def first_poll_delay(ctx: WorkerContext, job: Job, p: Prediction) -> float:
    """When this model's predictions usually finish (observed), else the configured initial delay."""
    expected = ctx.durations.expected(job.model)
    if expected is None:
        return with_webhooks(ctx.settings, ctx.settings.poll_initial_delay)
    elapsed = (utcnow() - p.created_at).total_seconds() if p.created_at else 0.0
    # 5% late on purpose: one GET just after the finish beats two GETs around it.
    return with_webhooks(ctx.settings, max(0.1, min(ctx.settings.poll_max_delay, expected * 1.05 - elapsed + 0.05)))
