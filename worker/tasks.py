"""Thin Celery tasks: take a job id, call one service, turn its outcome into the next message.

Retries are here and only here: a service raises RetryLater(delay) and the task re-sends itself with
that countdown. Anything unexpected is logged and left to the sweeper (the message is acked; the
job's next_check_at makes it overdue and it is re-sent), so a bug can't spin a hot retry loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery, Task
from sqlalchemy.exc import InterfaceError, OperationalError

from genqueue.worker import enqueue, runtime
from genqueue.worker.celery_app import MAX_COUNTDOWN
from genqueue.worker.runtime import WorkerContext
from genqueue.worker.services.outcomes import Next, RetryLater, backoff

log = logging.getLogger(__name__)


def _follow(ctx: WorkerContext, job_id: str, nxt: Next, store_inline: bool = True) -> None:
    if nxt.task == "poll":
        if ctx.settings.webhook_url:
            # Webhooks on: the push normally finishes the job. The safety-net poll is the sweeper's
            # (next_check_at is already set), not a delayed message per job held in worker memory.
            return
        ctx.enqueuer.poll(job_id, nxt.countdown)
    elif nxt.task == "store" and not store_inline:
        ctx.enqueuer.store(job_id)
    elif nxt.task == "store":
        # Copy the outputs right here rather than through another message: one broker round trip
        # less per job, and the files are fetched as soon as they exist. A crash here leaves the job
        # in `storing`, which the sweeper re-sends like any other step.
        from genqueue.worker.services.store import copy_outputs, store

        try:
            if nxt.job is not None:
                copy_outputs(ctx, nxt.job, set())
            else:
                store(ctx, job_id)
        except RetryLater as later:
            ctx.enqueuer.store(job_id, later.delay)
        except (OperationalError, InterfaceError) as exc:
            # Retry the copy as a store step: retrying the task that noticed the prediction (submit,
            # poll) would find the job past that step and drop it, leaving the copy to the sweeper.
            log.warning("job=%s store database unavailable (%s); retrying", job_id, type(exc).__name__)
            ctx.enqueuer.store(job_id, _db_retry_delay())
    elif nxt.task == "submit":
        ctx.enqueuer.submit([job_id])


def _db_retry_delay() -> float:
    """How long a step waits before trying again while the database is away (about 0.5-4 s)."""
    return backoff(2, base=1.0, cap=15.0)


def _again(task: Task, job_id: str, delay: float, name: str | None = None) -> None:
    # A fresh message (not task.retry): retries of these steps are unbounded by design; the job's
    # deadline and delivery counter bound them instead.
    runtime.get().enqueuer.send(name or task.name, [job_id], countdown=min(MAX_COUNTDOWN, max(0.05, delay)))


def _run(task: Task, job_id: str, service: Callable[[WorkerContext, str], Next], retry_as: str | None = None,
         store_inline: bool = True) -> None:
    ctx = runtime.get()
    try:
        nxt = service(ctx, job_id)
        _follow(ctx, job_id, nxt, store_inline)
    except RetryLater as later:
        log.info("job=%s %s retry in %.2fs: %s", job_id, task.name, later.delay, later.reason)
        _again(task, job_id, later.delay, retry_as)
    except (OperationalError, InterfaceError) as exc:
        # The database is away (restart, failover): try the same step again shortly. If the broker
        # is away too, the sweeper re-sends the step once both are back.
        log.warning("job=%s %s database unavailable (%s); retrying", job_id, task.name, type(exc).__name__)
        _again(task, job_id, _db_retry_delay(), retry_as)


def register(app: Celery) -> None:
    from genqueue.worker.services.poll import poll
    from genqueue.worker.services.pushed import observe_pushed
    from genqueue.worker.services.store import store
    from genqueue.worker.services.submit import submit
    from genqueue.worker.services.sweep import sweep

    @app.task(name=enqueue.SUBMIT, bind=True)
    def submit_task(self: Task, job_id: str) -> None:
        _run(self, job_id, submit)

    @app.task(name=enqueue.POLL, bind=True)
    def poll_task(self: Task, job_id: str) -> None:
        _run(self, job_id, poll)

    # A cancel is a poll that sees cancel_requested_at and cancels on Replicate first.
    @app.task(name=enqueue.CANCEL, bind=True)
    def cancel_task(self: Task, job_id: str) -> None:
        _run(self, job_id, poll)

    @app.task(name=enqueue.OBSERVE, bind=True)
    def observe_task(self: Task, job_id: str, prediction: dict[str, Any]) -> None:
        # A push that cannot be applied now (database away) falls back to a poll of the job: the
        # prediction itself is not re-sent around the broker. The copy goes to the store queue rather
        # than running here: pushes arrive in bursts, and recording "finished" must not wait for the
        # previous push's downloads (W2: detection lag p50 8.7 s with the copy inline).
        _run(self, job_id, lambda ctx, jid: observe_pushed(ctx, jid, prediction), retry_as=enqueue.POLL,
             store_inline=False)

    @app.task(name=enqueue.STORE, bind=True)
    def store_task(self: Task, job_id: str) -> None:
        _run(self, job_id, store)

    @app.task(name=enqueue.SWEEP)
    def sweep_task() -> int:
        try:
            return sweep(runtime.get()).total
        except (OperationalError, InterfaceError) as exc:
            log.warning("sweep skipped: database unavailable (%s)", type(exc).__name__)
            return 0
