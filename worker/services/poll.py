"""Refresh a running prediction with one GET of its `urls.get`, and decide when to look again.

No task ever sleeps while a prediction runs: a poll is one HTTP call, then the task reschedules
itself with a countdown, so one worker process carries thousands of predictions in flight.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from genqueue.models.base import utcnow
from genqueue.models.jobs import touch
from genqueue.models.status import ErrorCode, JobStatus
from genqueue.models.tables import Job
from genqueue.worker.replicate import PermanentError, TransientError
from genqueue.worker.runtime import WorkerContext
from genqueue.worker.services.observe import apply_terminal, duration, prediction_fields
from genqueue.worker.services.outcomes import DONE, Next, RetryLater, backoff, with_webhooks
from genqueue.worker.services.pages import is_fresh, refresh_page
from genqueue.worker.services.submit import MIN_CANCEL_AFTER, fail

log = logging.getLogger(__name__)

EARLY = timedelta(seconds=0.25)
DEADLINE_GRACE = timedelta(seconds=2)  # clock skew and Replicate's own reaction time


def next_delay(ctx: WorkerContext, job: Job, status: str | None, created_at: datetime | None) -> float:
    """Poll just after the model's usual finish time, then back off (bounded) for long predictions.
    With webhooks on, the push is what normally finishes a job and a poll is only a safety net."""
    delay = _poll_delay(ctx, job, status, created_at)
    return with_webhooks(ctx.settings, delay)


def _poll_delay(ctx: WorkerContext, job: Job, status: str | None, created_at: datetime | None) -> float:
    s = ctx.settings
    expected = ctx.durations.expected(job.model)
    if expected is not None and created_at is not None:
        remaining = expected * 1.05 - (utcnow() - created_at).total_seconds()
        if remaining > 0.1:
            return min(s.poll_max_delay, remaining + 0.05)
    if status == "starting":
        return min(s.poll_max_delay, max(0.5, s.poll_initial_delay))
    return min(s.poll_max_delay, s.poll_initial_delay * (1.25 ** min(job.polls, 20)))


def _past_replicate_deadline(job: Job, now: datetime) -> bool:
    """Whether our own cancel is due for a job with a deadline. The create sent it as `Cancel-After`
    (at least 5 s), so Replicate itself aborts the prediction (not started: `aborted`, not billed) or
    cancels it (running) at that moment; the next poll sees that. Our cancel is the backup for when
    that has not happened by DEADLINE_GRACE later; canceling first would only race Replicate's own
    abort and turn an honest `aborted` into `canceled`."""
    if job.deadline_at is None:
        return False
    theirs = job.deadline_at
    if job.prediction_created_at is not None:
        theirs = max(theirs, job.prediction_created_at + timedelta(seconds=MIN_CANCEL_AFTER))
    return now >= theirs + DEADLINE_GRACE


def _skip(ctx: WorkerContext, job: Job, now: datetime) -> Next:
    """No GET: reschedule from what we know of the prediction."""
    delay = next_delay(ctx, job, job.prediction_status, job.prediction_created_at)
    with ctx.sessions.begin() as session:
        touch(session, job.id, JobStatus.RUNNING, polls=job.polls + 1, deliveries=0,
              next_check_at=now + timedelta(seconds=delay))
    return Next("poll", delay)


def poll(ctx: WorkerContext, job_id: str) -> Next:
    with ctx.sessions() as session:
        job = session.get(Job, job_id)
        if job is None or job.status != JobStatus.RUNNING or not job.prediction_get_url:
            return DONE
    now = utcnow()
    if job.next_check_at and now < job.next_check_at - EARLY and job.cancel_requested_at is None:
        # Another poll chain already set a later check time: this message is a duplicate (sweeper
        # re-enqueue, redelivery). Dropping it keeps one chain per job and one GET per interval.
        return DONE
    if job.deliveries >= ctx.settings.max_deliveries:
        with ctx.sessions.begin() as session:
            return fail(session, job, JobStatus.RUNNING, ErrorCode.POISON, "gave up after repeated poll crashes")
    wants_cancel = job.cancel_requested_at is not None or _past_replicate_deadline(job, now)
    wait = ctx.limiter.acquire("read")
    if wait > 0:
        ctx.recorder.limiter_wait("read", wait)
        raise RetryLater(wait, "read budget")
    try:
        if wants_cancel and job.prediction_status not in ("succeeded", "failed", "canceled", "aborted"):
            url = job.prediction_cancel_url or job.prediction_get_url.rstrip("/") + "/cancel"
            p = ctx.replicate.cancel(url)
            log.info("job=%s canceled prediction=%s on Replicate", job.id, p.id)
            if not p.is_terminal:  # cancel accepted; the next poll sees the final status
                p = ctx.replicate.get(job.prediction_get_url)
        elif ctx.settings.poll_by_page:
            if is_fresh(ctx, job.prediction_id or ""):
                return _skip(ctx, job, now)  # a page read by another poll just saw it running
            found = refresh_page(ctx, job, lambda j, q: next_delay(ctx, j, q.status, q.created_at))
            p = found if found is not None else ctx.replicate.get(job.prediction_get_url)
        else:
            p = ctx.replicate.get(job.prediction_get_url)
    except TransientError as exc:
        if exc.status_code == 429:
            ctx.limiter.pause("read", exc.retry_after or 1.0)
        raise RetryLater(exc.retry_after or backoff(job.polls % 6), f"poll transient {exc.status_code}") from None
    except PermanentError as exc:
        with ctx.sessions.begin() as session:
            if exc.status_code == 404:
                return fail(session, job, JobStatus.RUNNING, ErrorCode.LOST, "prediction not found on Replicate")
            return fail(session, job, JobStatus.RUNNING, ErrorCode.REPLICATE_ERROR, str(exc))
    now = utcnow()
    with ctx.sessions.begin() as session:
        if p.is_terminal:
            if p.status == "succeeded":
                ctx.durations.observe(job.model, duration(p))
            return apply_terminal(session, job, JobStatus.RUNNING, p, now)
        delay = next_delay(ctx, job, p.status, p.created_at)
        log.debug("job=%s prediction=%s %s; next poll in %.2fs", job.id, p.id, p.status, delay)
        touch(session, job.id, JobStatus.RUNNING, **prediction_fields(p), polls=job.polls + 1, deliveries=0,
              next_check_at=now + timedelta(seconds=delay))
    return Next("poll", delay)
