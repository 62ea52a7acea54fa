"""Refresh many running predictions with one list page instead of one GET each.

`GET /v1/predictions` returns up to 100 predictions, newest first, filtered by creation time. A poll
that is due asks for the page of predictions created up to its own; everything that page says about
our other running jobs is recorded too: finished ones move on at once, unfinished ones are marked
fresh in Redis so their own poll, when it comes, skips its GET. With many predictions in flight,
reads per prediction fall from one per poll to about one per hundred.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select

from genqueue.models.base import utcnow
from genqueue.models.status import JobStatus
from genqueue.models.tables import Job
from genqueue.worker.replicate import Prediction
from genqueue.worker.runtime import WorkerContext
from genqueue.worker.services.observe import apply_terminal, duration

FRESH = "gq:fresh:{}"
DelayFor = Callable[[Job, Prediction], float]  # when that job would poll next
WINDOW = timedelta(minutes=30)  # how far back a page may reach (predictions older than this are rare)


def is_fresh(ctx: WorkerContext, prediction_id: str) -> bool:
    return bool(ctx.redis.exists(FRESH.format(prediction_id)))


def refresh_page(ctx: WorkerContext, job: Job, delay_for: DelayFor) -> Prediction | None:
    """Read the page that ends at this job's prediction; apply it to our other running jobs.
    Returns this job's prediction, or None when the page does not hold it (then GET it)."""
    created = job.prediction_created_at
    if created is None:
        return None
    page = ctx.replicate.list(created_after=created - WINDOW, created_before=created + timedelta(milliseconds=1))
    mine = next((p for p in page.results if p.id == job.prediction_id), None)
    others = {p.id: p for p in page.results if p.id != job.prediction_id}
    if others:
        _apply(ctx, others, delay_for)
    return mine


def _apply(ctx: WorkerContext, predictions: dict[str, Prediction], delay_for: DelayFor) -> None:
    with ctx.sessions() as session:  # detached copies: changes go through compare-and-set only
        jobs = list(session.scalars(
            select(Job).where(Job.prediction_id.in_(list(predictions)), Job.status == JobStatus.RUNNING)))
    if not jobs:
        return
    now = utcnow()
    stores: list[str] = []
    pipe = ctx.redis.pipeline(transaction=False)
    with ctx.sessions.begin() as session:
        for job in jobs:
            p = predictions[job.prediction_id or ""]
            if p.is_terminal:
                if p.status == "succeeded":
                    ctx.durations.observe(job.model, duration(p))
                if apply_terminal(session, job, JobStatus.RUNNING, p, now).task == "store":
                    stores.append(job.id)
            else:
                delay = delay_for(job, p)
                pipe.set(FRESH.format(p.id), "1", px=int(delay * 1000) + 500)
    pipe.execute()
    for job_id in stores:
        ctx.enqueuer.store(job_id)
