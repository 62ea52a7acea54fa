"""The submit step: create the prediction for a job, exactly once (the rules: `lifecycle.create`)."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError

from genqueue.core.crypto import SecretsError, decrypt_secrets
from genqueue.core.events import publish
from genqueue.models.attempts import earlier_predictions
from genqueue.models.jobs import JOBS
from genqueue.models.status import JobStatus
from genqueue.sched.ready import entry
from genqueue.worker.context import WorkerContext
from genqueue.worker.lifecycle import create as rules
from genqueue.worker.lifecycle.decision import NOTHING, Decision, Next, Step, retry_delay, wait
from genqueue.worker.lifecycle.snapshot import JobSnapshot
from genqueue.worker.replicate import PermanentError, Prediction, ReplicateError, TransientError, input_digest
from genqueue.worker.services.writes import commit, effects, load, write

log = logging.getLogger(__name__)

# Pauses between attempts to record a create's answer while the database is unavailable (~15 s).
RECORD_RETRY_PAUSES = (0.5, 1.0, 2.0, 4.0, 8.0)


def submit(ctx: WorkerContext, job_id: str, dispatched: bool = False) -> Next:
    """`dispatched`: sent by the dispatcher (`worker.dispatcher`) with a create token already taken;
    it leaves the in-flight set as soon as the claim is committed (or the job needs no create)."""
    with ctx.sessions() as session:
        job = load(session, job_id)
    if job is None:
        return NOTHING
    now = ctx.clock.now()
    plan = rules.before_create(job, now, dispatched=dispatched)
    if plan is rules.Action.ENQUEUE:
        # Only the dispatcher sends creates for queued jobs: back to the job's lane (a no-op if it is
        # there or in flight), where it keeps its place (its creation time is the lane order).
        ctx.ready.requeue([entry(job.id, job.priority, job.api_key_id, job.created_at.timestamp())])
        return NOTHING
    if plan is None or isinstance(plan, Decision):
        _release(ctx, job, dispatched)
        return commit(ctx, job, plan)
    try:
        payload = {**job.input_public, **decrypt_secrets(ctx.cipher, job.input_sealed)}
    except SecretsError as exc:
        _release(ctx, job, dispatched)
        return commit(ctx, job, rules.secrets_unavailable(job, str(exc), now))
    if plan is rules.Action.RECONCILE:
        adopted = _reconcile(ctx, job, payload)
        if adopted is not None:
            return adopted
        budget = ctx.limiter.acquire("create", also_blocked_by=(ctx.breaker.open_key,))
        if budget > 0:
            ctx.recorder.limiter_wait("create", budget)
            return commit(ctx, job, wait(job, Step.SUBMIT, budget, now))
    now = ctx.clock.now()
    with ctx.sessions.begin() as session:
        won = write(session, job.id, rules.claim(job, now, ctx.policy, ctx.worker_id))
    _release(ctx, job, dispatched)
    if not won:
        return NOTHING
    publish(ctx.redis, job.id, JobStatus.SUBMITTING.value)  # job events (core/events.py); never raises
    # The claim is committed: from here on a crash leaves `submitting`, which means "look it up first".
    return _create(ctx, rules.claimed(job, now, ctx.policy), payload)


def _release(ctx: WorkerContext, job: JobSnapshot, dispatched: bool) -> None:
    if not dispatched:
        return
    try:
        ctx.ready.release(job.api_key_id, job.id)
    except redis.RedisError:
        # The dispatcher finds the entry stale later and checks the job in SQL: nothing is lost.
        log.warning("job=%s not released from in-flight (Redis away)", job.id)


def _reconcile(ctx: WorkerContext, job: JobSnapshot, payload: dict[str, Any]) -> Next | None:
    """A create may have landed without us recording it: adopt that prediction if it exists. Returns
    the follow-up, or None to go on and create."""
    now = ctx.clock.now()
    budget = ctx.limiter.acquire("read")
    if budget > 0:
        return commit(ctx, job, wait(job, Step.SUBMIT, budget, now))
    exclude: frozenset[str] = frozenset()
    if job.attempt > 1:  # a retried job: its earlier attempts' predictions have the same input
        with ctx.sessions() as session:
            exclude = earlier_predictions(session, job.id)
    try:
        found = ctx.replicate.find_created(created_after=rules.reconcile_since(job), version=job.version,
                                           model=job.model, input_digest=input_digest(payload), exclude=exclude)
    except TransientError as exc:
        return commit(ctx, job, wait(job, Step.SUBMIT, exc.retry_after or retry_delay(), now))
    if found is None:
        log.info("job=%s no prediction found for an unanswered create", job.id)
        return None
    # The chaos suite counts this line: every lost create answer must end adopted, never re-created.
    log.info("job=%s adopted prediction=%s whose create answer was lost", job.id, found.id)
    expected = ctx.durations.expected(job.model)
    return commit(ctx, job, rules.created(job, found, ctx.clock.now(), ctx.policy, expected, adopted=True))


def _create(ctx: WorkerContext, job: JobSnapshot, payload: dict[str, Any]) -> Next:
    expected = ctx.durations.expected(job.model)
    try:
        args = rules.create_args(job, ctx.clock.now(), ctx.policy, expected)
        prediction = ctx.replicate.create(input=payload, **args)
    except TransientError as exc:
        if exc.status_code == 429:
            ctx.limiter.pause("create", exc.retry_after or 1.0)
        elif exc.status_code and exc.status_code >= 500:
            ctx.breaker.failure()
        delay = exc.retry_after if exc.retry_after is not None else retry_delay()
        return _commit_outcome(ctx, job, rules.create_unanswered(job, maybe_sent=exc.request_sent_maybe,
                                                                 delay=delay, now=ctx.clock.now()))
    except PermanentError as exc:
        return _commit_outcome(ctx, job, rules.create_refused(job, exc.status_code, str(exc), ctx.clock.now()))
    ctx.breaker.success()
    return _record(ctx, job, prediction, rules.created(job, prediction, ctx.clock.now(), ctx.policy, expected))


def _commit_outcome(ctx: WorkerContext, job: JobSnapshot, decision: Decision) -> Next:
    """Record a create that did not answer with a prediction, retried in place like `_record`: only
    this thread knows the create is over, and a re-sent message would find the claim's create window
    still open and wait it out (a PostgreSQL restart left such jobs 45 s behind)."""
    for pause in (*RECORD_RETRY_PAUSES, None):
        try:
            return commit(ctx, job, decision)
        except (OperationalError, InterfaceError) as exc:
            if pause is None:
                raise
            log.warning("job=%s create outcome not recorded (%s), again in %.1fs", job.id, type(exc).__name__, pause)
            time.sleep(pause)
    return NOTHING  # not reached: the last failure propagates


def _record(ctx: WorkerContext, job: JobSnapshot, p: Prediction, decision: Decision) -> Next:
    """Record what the create answered. Until this commits, the paid prediction exists only in this
    thread's memory: a database error here is retried in place for a few seconds. Left to a new
    message, the retry would find the claim's create window still open and drop itself, and the
    sweeper would adopt the prediction minutes later (W1 with PostgreSQL out of connections: 180 s).
    A last failure propagates: the task retries, and the reconcile adopts the prediction."""
    for attempt, pause in enumerate((*RECORD_RETRY_PAUSES, None)):
        try:
            with ctx.sessions.begin() as session:
                if attempt and _recorded_already(session, job.id, p.id):
                    # An earlier attempt's COMMIT landed though its reply was lost: it is ours.
                    return decision.then
                if write(session, job.id, decision):
                    break
                if _recorded_already(session, job.id, p.id):
                    # Another worker adopted this very prediction (it took us for dead): it is ours.
                    return NOTHING
            _orphan(ctx, job, p)
            return NOTHING
        except (OperationalError, InterfaceError) as exc:
            if pause is None:
                raise
            log.warning("job=%s prediction=%s created; recording it failed (%s), again in %.1fs",
                        job.id, p.id, type(exc).__name__, pause)
            time.sleep(pause)
    return effects(ctx, job, decision)


def _recorded_already(session: Any, job_id: str, prediction_id: str) -> bool:
    row = session.execute(select(JOBS.c.prediction_id, JOBS.c.status).where(JOBS.c.id == job_id)).one_or_none()
    return row is not None and row.prediction_id == prediction_id and row.status != JobStatus.SUBMITTING


def _orphan(ctx: WorkerContext, job: JobSnapshot, p: Prediction) -> None:
    """Our create landed but the job moved on without us (should not happen given the claims):
    never leave a paid prediction running unowned."""
    log.warning("job=%s prediction=%s created but the job is no longer ours; canceling it", job.id, p.id)
    if p.urls_cancel and not p.is_terminal:
        try:
            ctx.replicate.cancel(p.urls_cancel)
        except ReplicateError:
            log.warning("job=%s could not cancel orphan prediction=%s", job.id, p.id)
