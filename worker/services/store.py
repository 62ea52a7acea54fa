"""The store step: copy a succeeded prediction's outputs into object storage, streaming, one at a time.

Keys derive from the job id and output index, and an output already recorded is skipped, so running
this twice (a redelivery, the sweeper) neither duplicates nor corrupts anything.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from genqueue.models.tables import JobOutput
from genqueue.storage import StorageError, StoredObject, output_key
from genqueue.worker.context import WorkerContext
from genqueue.worker.fetch import OutputExpired, OutputRefused, OutputTransient, open_output
from genqueue.worker.lifecycle import store as rules
from genqueue.worker.lifecycle.decision import NOTHING, Decision, Next, retry_delay
from genqueue.worker.lifecycle.snapshot import JobSnapshot
from genqueue.worker.replicate import PermanentError, TransientError
from genqueue.worker.services.writes import commit, effects, write, write_returning


def store(ctx: WorkerContext, job_id: str) -> Next:
    """The store step as a message runs it: count the delivery and reload the job in one UPDATE ...
    RETURNING, and resume where a previous run stopped. The recorded outputs are read only for a job
    with several (the last output is recorded with the success, so a one-output job still storing has
    none): with webhooks this step runs once per prediction, so round trips count."""
    with ctx.sessions.begin() as session:
        job = write_returning(session, job_id, rules.begin(ctx.clock.now()))
        if job is None:
            return NOTHING
        done: set[int] = set()
        if len(job.output_refs or []) > 1:
            done = set(session.scalars(select(JobOutput.index).where(JobOutput.job_id == job_id)))
    poisoned = rules.poisoned(job, ctx.clock.now())
    if poisoned is not None:
        return commit(ctx, job, poisoned)
    return copy_outputs(ctx, job, done)


def copy_outputs(ctx: WorkerContext, job: JobSnapshot, done: Collection[int] = ()) -> Next:
    """Copy every output not in `done`, then mark the job succeeded. Called inline right after the
    prediction was seen succeeding (the snapshot then is the job as that step wrote it), or by
    `store` after a reload."""
    refs = job.output_refs or []
    last: JobOutput | None = None  # the last output is recorded with the success, in one commit
    for index, ref in enumerate(refs):
        if index in done:
            continue
        obj = _copy_one(ctx, job, index, ref)
        if isinstance(obj, Decision):
            return commit(ctx, job, obj)
        row = JobOutput(job_id=job.id, index=index, content_type=obj.content_type, size=obj.size,
                        sha256=obj.sha256, storage_key=obj.key, storage_uri=obj.uri)
        if index == len(refs) - 1:
            last = row
            continue
        try:
            with ctx.sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            pass  # a concurrent run recorded the same output (same key, same bytes)
    decision = rules.stored(job, ctx.clock.now())
    try:
        written = _succeed(ctx, job, decision, last)
    except IntegrityError:
        written = _succeed(ctx, job, decision, None)  # a concurrent run recorded that output already
    return effects(ctx, job, decision) if written else NOTHING


def _copy_one(ctx: WorkerContext, job: JobSnapshot, index: int, ref: str) -> StoredObject | Decision:
    s = ctx.settings
    try:
        with open_output(ref, http=ctx.downloads, allowed_hosts=s.allowed_hosts,
                         allow_private=s.output_allow_private, max_bytes=s.output_max_bytes) as src:
            key = output_key(job.id, index, src.content_type)
            return ctx.storage.put_stream(key, src.chunks, src.content_type)
    except OutputExpired as exc:
        return rules.copy_failed(job, rules.CopyFailure.EXPIRED, str(exc), ctx.clock.now(),
                                 removed=_removed(ctx, job), delay=retry_delay())
    except OutputRefused as exc:
        return rules.copy_failed(job, rules.CopyFailure.REFUSED, f"{exc.code}: {exc}", ctx.clock.now(), removed=False,
                                 delay=0)
    except OutputTransient as exc:
        return rules.copy_failed(job, rules.CopyFailure.TRANSIENT, f"output {index}: {type(exc).__name__}: {exc}",
                                 ctx.clock.now(), removed=False, delay=retry_delay())
    except StorageError as exc:
        return rules.storage_failed(job, exc.reason, f"output {index}: {exc}", ctx.clock.now(), delay=retry_delay())


def _removed(ctx: WorkerContext, job: JobSnapshot) -> bool:
    """A 404/403 on an output means expiry only if Replicate says the data was removed; a file that
    is merely not there yet (CDN lag) is retried, until Replicate's retention has surely passed."""
    if not job.prediction_get_url or rules.past_retention(job, ctx.clock.now()):
        return True
    try:
        p = ctx.replicate.get(job.prediction_get_url)
    except (TransientError, PermanentError):
        return False
    return p.data_removed or p.output is None


def _succeed(ctx: WorkerContext, job: JobSnapshot, decision: Decision, last: JobOutput | None) -> bool:
    with ctx.sessions.begin() as session:
        if last is not None:
            session.add(last)
            session.flush()
        return write(session, job.id, decision)
