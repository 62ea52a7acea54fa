"""Apply a finished prediction that Replicate pushed to us (webhook), instead of polling for it.

The API has verified the signature and stripped the input. The job must be `running` with exactly
this prediction: a push for an older prediction of the job (a create whose answer was lost and was
adopted differently) or for a job already past `running` is ignored. A push that beats the create's
own answer (job still `submitting`) is dropped too: the job's first poll will see the same result.
"""

from __future__ import annotations

import logging
from typing import Any

from genqueue.models.base import utcnow
from genqueue.models.status import JobStatus
from genqueue.models.tables import Job
from genqueue.worker.replicate import PermanentError, parse_prediction
from genqueue.worker.runtime import WorkerContext
from genqueue.worker.services.observe import apply_terminal, duration
from genqueue.worker.services.outcomes import DONE, Next

log = logging.getLogger(__name__)


def observe_pushed(ctx: WorkerContext, job_id: str, data: dict[str, Any]) -> Next:
    try:
        p = parse_prediction(data)
    except PermanentError:
        log.warning("job=%s webhook without a usable prediction; ignored", job_id)
        return DONE
    if not p.is_terminal:
        return DONE
    with ctx.sessions.begin() as session:
        job = session.get(Job, job_id)
        if job is None or job.status != JobStatus.RUNNING:
            return DONE  # unknown, not yet recorded as running, or already finished (duplicate push)
        if job.prediction_id != p.id:
            log.warning("job=%s webhook for prediction=%s, but the job follows %s; ignored",
                        job_id, p.id, job.prediction_id)
            return DONE
        session.expunge(job)  # writes go through apply_terminal's compare-and-set only
        if p.status == "succeeded":
            ctx.durations.observe(job.model, duration(p))
        return apply_terminal(session, job, JobStatus.RUNNING, p, utcnow())
