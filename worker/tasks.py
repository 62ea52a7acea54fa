"""Thin Celery tasks: take a job id, run one step, send the follow-up the step returned.

A step returns `Next` (nothing, or a step to run for this job after a countdown); this module is the
only place that turns one into a message. A database outage is retried here: the same step again
shortly. Anything unexpected is logged and left to the sweeper (the message is acked; the job's
next_check_at makes it overdue and it is re-sent), so a bug can't spin a hot retry loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError

from genqueue.worker import enqueue
from genqueue.worker.celery_app import MAX_COUNTDOWN, WorkerApp
from genqueue.worker.context import WorkerContext
from genqueue.worker.lifecycle.decision import Next, Step, retry_delay
from genqueue.worker.services.callbacks import deliver_due
from genqueue.worker.services.poll import poll
from genqueue.worker.services.pushed import observe_pushed
from genqueue.worker.services.store import copy_outputs, store
from genqueue.worker.services.submit import submit
from genqueue.worker.services.sweep import sweep
from genqueue.worker.services.writes import load

log = logging.getLogger(__name__)

_DB_AWAY = (OperationalError, InterfaceError)


def follow_up(ctx: WorkerContext, job_id: str, nxt: Next) -> None:
    """Send (or, for an inline store, run) what a step said comes next."""
    if nxt.step is None:
        return
    if nxt.step is Step.STORE and nxt.inline:
        _store_inline(ctx, job_id)
        return
    countdown = min(MAX_COUNTDOWN, max(0.05, nxt.countdown)) if nxt.countdown else 0.0
    ctx.enqueuer.send(enqueue.TASK_FOR_STEP[nxt.step], [job_id], countdown)


def _store_inline(ctx: WorkerContext, job_id: str) -> None:
    # A database error here is retried as a store step: retrying the task that noticed the prediction
    # (submit, poll) would find the job past that step and drop it, leaving the copy to the sweeper.
    try:
        with ctx.sessions() as session:
            job = load(session, job_id)
        nxt = copy_outputs(ctx, job) if job is not None else Next()
    except _DB_AWAY as exc:
        log.warning("job=%s store database unavailable (%s); retrying", job_id, type(exc).__name__)
        nxt = Next(Step.STORE, retry_delay())
    follow_up(ctx, job_id, nxt)


def _run(ctx: WorkerContext, name: str, job_id: str, step: Callable[[WorkerContext, str], Next],
         retry_as: Step) -> None:
    ctx.recorder.step_run(name.removeprefix("genqueue."))
    try:
        nxt = step(ctx, job_id)
    except _DB_AWAY as exc:
        # The database is away (restart, failover): the same step again shortly. If the broker is
        # away too, the sweeper re-sends the step once both are back.
        log.warning("job=%s %s database unavailable (%s); retrying", job_id, name, type(exc).__name__)
        nxt = Next(retry_as, retry_delay())
    if nxt.step is not None and nxt.step is not Step.STORE:
        log.debug("job=%s %s next %s in %.2fs", job_id, name, nxt.step, nxt.countdown)
    follow_up(ctx, job_id, nxt)


def register(app: WorkerApp) -> None:
    @app.task(name=enqueue.SUBMIT)
    def submit_task(job_id: str, dispatched: bool = False) -> None:
        # `dispatched`: sent by the dispatcher with a create token taken (worker.dispatcher).
        _run(app.context, enqueue.SUBMIT, job_id, lambda ctx, jid: submit(ctx, jid, dispatched), Step.SUBMIT)

    @app.task(name=enqueue.POLL)
    def poll_task(job_id: str) -> None:
        _run(app.context, enqueue.POLL, job_id, poll, Step.POLL)

    # A cancel is a poll that sees cancel_requested_at and cancels on Replicate first.
    @app.task(name=enqueue.CANCEL)
    def cancel_task(job_id: str) -> None:
        _run(app.context, enqueue.CANCEL, job_id, poll, Step.POLL)

    @app.task(name=enqueue.OBSERVE)
    def observe_task(job_id: str, prediction: dict[str, Any]) -> None:
        # A push that cannot be applied now (database away) falls back to a poll of the job: the
        # prediction itself is not re-sent around the broker.
        _run(app.context, enqueue.OBSERVE, job_id, lambda ctx, jid: observe_pushed(ctx, jid, prediction), Step.POLL)

    @app.task(name=enqueue.STORE)
    def store_task(job_id: str) -> None:
        _run(app.context, enqueue.STORE, job_id, store, Step.STORE)

    @app.task(name=enqueue.CALLBACK)
    def callback_task(job_id: str) -> None:
        # A failure of any kind is left to the sweeper: the outbox row is due (or its lease runs out).
        try:
            retry = deliver_due(app.context, job_id)
        except _DB_AWAY as exc:
            log.warning("job=%s callback database unavailable (%s); the sweeper retries", job_id, type(exc).__name__)
            return
        if retry is not None:
            app.context.enqueuer.send(enqueue.CALLBACK, [job_id], max(0.05, retry))

    @app.task(name=enqueue.SWEEP)
    def sweep_task() -> int:
        try:
            return sweep(app.context).total
        except _DB_AWAY as exc:
            log.warning("sweep skipped: database unavailable (%s)", type(exc).__name__)
            return 0
