"""The poll step: one look at a running prediction (a GET of its `urls.get`, or a cancel first).

No task ever sleeps while a prediction runs: a look is one HTTP call, then the decision says when to
look again, so one worker process carries thousands of predictions in flight.
"""

from __future__ import annotations

import logging

from genqueue.worker.context import WorkerContext
from genqueue.worker.lifecycle import follow as rules
from genqueue.worker.lifecycle.decision import NOTHING, Decision, Next, Step, retry_delay, wait
from genqueue.worker.replicate import PermanentError, Prediction, TransientError
from genqueue.worker.services.writes import commit, load

log = logging.getLogger(__name__)


def poll(ctx: WorkerContext, job_id: str) -> Next:
    with ctx.sessions() as session:
        job = load(session, job_id)
    if job is None:
        return NOTHING
    look = rules.before_look(job, ctx.clock.now())
    if look is None or isinstance(look, Decision):
        return commit(ctx, job, look)
    budget = ctx.limiter.acquire("read")
    if budget > 0:
        ctx.recorder.limiter_wait("read", budget)
        # The check time moves with the wait: a job waiting for the read budget is not overdue, so
        # the sweeper does not take it for lost and add a second chain.
        return commit(ctx, job, wait(job, Step.POLL, budget, ctx.clock.now()))
    assert job.prediction_get_url is not None  # before_look looks only at jobs that have one
    try:
        if look is rules.Look.CANCEL:
            p = _cancel(ctx, job.prediction_cancel_url or job.prediction_get_url.rstrip("/") + "/cancel",
                        job.prediction_get_url, job.id)
        else:
            p = ctx.replicate.get(job.prediction_get_url)
    except TransientError as exc:
        if exc.status_code == 429:
            ctx.limiter.pause("read", exc.retry_after or 1.0)
        return commit(ctx, job, wait(job, Step.POLL, exc.retry_after or retry_delay(), ctx.clock.now()))
    except PermanentError as exc:
        return commit(ctx, job, rules.read_refused(job, exc.status_code, str(exc), ctx.clock.now()))
    return commit(ctx, job, rules.observed(job, p, ctx.clock.now(), ctx.policy, ctx.durations.expected(job.model)))


def _cancel(ctx: WorkerContext, cancel_url: str, get_url: str, job_id: str) -> Prediction:
    p = ctx.replicate.cancel(cancel_url)
    log.info("job=%s canceled prediction=%s on Replicate", job_id, p.id)
    if not p.is_terminal:  # cancel accepted; read the status it settled in
        p = ctx.replicate.get(get_url)
    return p
