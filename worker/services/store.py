"""Copy a succeeded prediction's outputs into object storage, streaming, one output at a time.

Keys derive from the job id and output index, and an output already recorded is skipped, so running
this twice (a redelivery, the sweeper) neither duplicates nor corrupts anything.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from genqueue.models.base import utcnow
from genqueue.models.jobs import finish_timings, transition
from genqueue.models.status import ErrorCode, JobStatus
from genqueue.models.tables import Job, JobOutput
from genqueue.storage import StorageError, StoredObject, output_key
from genqueue.worker.fetch import OutputExpired, OutputRefused, OutputTransient, open_output
from genqueue.worker.replicate import PermanentError, TransientError
from genqueue.worker.runtime import WorkerContext
from genqueue.worker.services.outcomes import DONE, Next, RetryLater, backoff
from genqueue.worker.services.submit import fail

log = logging.getLogger(__name__)

# Replicate deletes API predictions' files an hour after completion; past that, retrying is pointless.
RETENTION_SECONDS = 3600.0


def _past_retention(job: Job) -> bool:
    return job.completed_at is not None and (utcnow() - job.completed_at).total_seconds() > RETENTION_SECONDS


def _undo_delivery(ctx: WorkerContext, job_id: str) -> None:
    """A transient failure is not a crash: take back this attempt from the crash counter."""
    with ctx.sessions.begin() as session:
        session.execute(update(Job).where(Job.id == job_id, Job.deliveries > 0)
                        .values(deliveries=Job.deliveries - 1))


def _really_expired(ctx: WorkerContext, job: Job) -> bool:
    """A 404/403 on an output means expiry only if Replicate says the data was removed; a file that
    is merely not there yet (CDN lag) is retried, bounded by the job's delivery counter."""
    if not job.prediction_get_url or _past_retention(job):
        return True
    try:
        p = ctx.replicate.get(job.prediction_get_url)
    except (TransientError, PermanentError):
        return False
    return p.data_removed or p.output is None


def store(ctx: WorkerContext, job_id: str) -> Next:
    """The store step as a message runs it: reload the job and resume where a previous run stopped.

    The reload and the delivery count are one UPDATE ... RETURNING, and the recorded outputs are read
    only for a job with several (the last output is recorded with the success, so a one-output job
    still storing has none): with webhooks this step runs once per prediction, so round trips count."""
    with ctx.sessions.begin() as session:
        job = session.scalars(
            update(Job).where(Job.id == job_id, Job.status == JobStatus.STORING.value)
            .values(deliveries=Job.deliveries + 1).returning(Job)
            .execution_options(synchronize_session=False)
        ).one_or_none()
        if job is None:
            return DONE
        done: set[int] = set()
        if len(job.output_refs or []) > 1:
            done = set(session.scalars(select(JobOutput.index).where(JobOutput.job_id == job_id)))
    if job.deliveries > ctx.settings.max_deliveries:  # this run is counted already
        with ctx.sessions.begin() as session:
            return fail(session, job, JobStatus.STORING, ErrorCode.POISON, "gave up after repeated storage attempts")
    return copy_outputs(ctx, job, done)


def copy_outputs(ctx: WorkerContext, job: Job, done: set[int]) -> Next:
    """Copy every output not in `done`, then mark the job succeeded. Called inline right after the
    prediction was seen succeeding (the job in memory is current), or by `store` after a reload."""
    refs = job.output_refs or []
    pending: JobOutput | None = None  # the last output is recorded with the success, in one commit
    for index, ref in enumerate(refs):
        if index in done:
            continue
        obj = _copy_one(ctx, job, index, ref)
        if isinstance(obj, Next):
            return obj
        row = JobOutput(job_id=job.id, index=index, content_type=obj.content_type, size=obj.size,
                        sha256=obj.sha256, storage_key=obj.key, storage_uri=obj.uri)
        if index == len(refs) - 1:
            pending = row
            continue
        try:
            with ctx.sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            pass  # a concurrent run recorded the same output (same key, same bytes)
    try:
        _succeed(ctx, job, pending)
    except IntegrityError:
        _succeed(ctx, job, None)  # a concurrent run recorded that output already
    return DONE


def _copy_one(ctx: WorkerContext, job: Job, index: int, ref: str) -> StoredObject | Next:
    s = ctx.settings
    try:
        with open_output(ref, http=ctx.downloads, allowed_hosts=s.allowed_hosts,
                         allow_private=s.output_allow_private, max_bytes=s.output_max_bytes) as src:
            key = output_key(job.id, index, src.content_type)
            return ctx.storage.put_stream(key, src.chunks, src.content_type)
    except OutputExpired as exc:
        if not _really_expired(ctx, job):
            _undo_delivery(ctx, job.id)
            raise RetryLater(backoff(job.deliveries), f"output {index} 404 but not removed yet") from None
        with ctx.sessions.begin() as session:
            return fail(session, job, JobStatus.STORING, ErrorCode.OUTPUT_EXPIRED, str(exc))
    except OutputRefused as exc:
        with ctx.sessions.begin() as session:
            return fail(session, job, JobStatus.STORING, ErrorCode.OUTPUT_REFUSED, f"{exc.code}: {exc}")
    except (OutputTransient, StorageError) as exc:
        if _past_retention(job):
            with ctx.sessions.begin() as session:
                return fail(session, job, JobStatus.STORING, ErrorCode.OUTPUT_EXPIRED,
                            f"outputs could not be copied before Replicate's retention ended: {exc}")
        _undo_delivery(ctx, job.id)
        raise RetryLater(backoff(min(job.deliveries, 5)), f"output {index}: {type(exc).__name__}") from None


def _succeed(ctx: WorkerContext, job: Job, last: JobOutput | None) -> None:
    now = utcnow()
    with ctx.sessions.begin() as session:
        if last is not None:
            session.add(last)
            session.flush()
        if transition(session, job.id, JobStatus.STORING, JobStatus.SUCCEEDED, finished_at=now, next_check_at=None,
                      deliveries=0, error_code=None, error_message=None, **finish_timings(job, now)):
            log.info("job=%s succeeded outputs=%d e2e=%.3fs", job.id, len(job.output_refs or []),
                     (now - job.created_at).total_seconds())
