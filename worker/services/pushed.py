"""The observe step: apply a finished prediction Replicate pushed to us (webhook), without a GET.

The API has verified the signature and stripped the input; `lifecycle.follow.pushed` decides whether
the push still applies (duplicates, late and foreign pushes are dropped).
"""

from __future__ import annotations

import logging
from typing import Any

from genqueue.worker.context import WorkerContext
from genqueue.worker.lifecycle import follow as rules
from genqueue.worker.lifecycle.decision import NOTHING, Next
from genqueue.worker.replicate import PermanentError, parse_prediction
from genqueue.worker.services.writes import commit, load

log = logging.getLogger(__name__)


def observe_pushed(ctx: WorkerContext, job_id: str, data: dict[str, Any]) -> Next:
    try:
        p = parse_prediction(data)
    except PermanentError:
        log.warning("job=%s webhook without a usable prediction; ignored", job_id)
        return NOTHING
    if not p.is_terminal:
        return NOTHING
    with ctx.sessions() as session:
        job = load(session, job_id)
    if job is not None and job.prediction_id not in (None, p.id):
        log.warning("job=%s webhook for prediction=%s, but the job follows %s; ignored", job_id, p.id,
                    job.prediction_id)
    decision = rules.pushed(job, p, ctx.clock.now(), ctx.policy)
    return commit(ctx, job, decision) if job is not None else NOTHING
