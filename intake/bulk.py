"""Bulk actions and replays: retry (a new attempt) or cancel every job a filter matches.

Set-based, a chunk at a time: the chunk's ids are read by keyset (id order) under the filter, then
one transaction per chunk does the retry (models.attempts.replay: one SELECT FOR UPDATE, one INSERT
of the finished attempts, one UPDATE) or the cancel (one UPDATE of the queued ones, one of the
running ones, one INSERT ... SELECT of their callbacks), and after its commit one lanes add (retry)
or one pipeline of cancel messages (cancel). Progress is written to the bulk_actions row per chunk.
The filter is fixed when the action starts: only jobs created up to that moment are looked at.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import redis
from sqlalchemy import ColumnElement, func, insert, literal, select, true, update
from sqlalchemy.orm import Session, sessionmaker

from genqueue.core.events import publish_many
from genqueue.models import callbacks
from genqueue.models.attempts import Replayed, replay
from genqueue.models.base import utcnow
from genqueue.models.ids import new_id
from genqueue.models.jobs import JOBS
from genqueue.models.metafilter import MetadataMatches
from genqueue.models.status import REPLAYABLE, JobStatus, check_transition
from genqueue.models.tables import BulkAction
from genqueue.sched.ready import Entry, ReadyQueues, entry

log = logging.getLogger(__name__)

CHUNK = 1000
Action = Literal["retry", "cancel"]
RETRYABLE = tuple(s.value for s in REPLAYABLE)
CANCELABLE = (JobStatus.QUEUED.value, JobStatus.SUBMITTING.value, JobStatus.RUNNING.value)


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a bulk action is for (every field optional, all must hold). `api_key_id`: the
    caller's scope (None with `all_keys`: an admin sees every key's jobs)."""

    api_key_id: str | None
    all_keys: bool = False
    status: str | None = None
    model: str | None = None
    priority: int | None = None
    metadata: dict[str, str] | None = None
    created_before: datetime | None = None
    created_after: datetime | None = None
    batch: str | None = None
    error_code: str | None = None

    def where(self, action: Action) -> list[ColumnElement[bool]]:
        c = JOBS.c
        allowed = RETRYABLE if action == "retry" else CANCELABLE
        out: list[ColumnElement[bool]] = [c.status.in_([self.status] if self.status else list(allowed))]
        if not self.all_keys:
            out.append(c.api_key_id == self.api_key_id if self.api_key_id else c.api_key_id.is_(None))
        if self.model:
            out.append(c.model == self.model)
        if self.priority is not None:
            out.append(c.priority == self.priority)
        if self.metadata:
            out.append(MetadataMatches(c.meta, self.metadata))
        if self.created_before:
            out.append(c.created_at < self.created_before)
        if self.created_after:
            out.append(c.created_at >= self.created_after)
        if self.batch:
            out.append(c.batch_id == self.batch)
        if self.error_code:
            out.append(c.error_code == self.error_code)
        return out


@dataclass
class Progress:
    matched: int = 0
    done: int = 0
    skipped: int = 0
    skipped_secrets_deleted: int = 0


def count(session: Session, action: Action, flt: JobFilter) -> int:
    return int(session.scalar(select(func.count()).select_from(JOBS).where(*flt.where(action))) or 0)


def start(session: Session, action: Action, flt: JobFilter, shown_filter: dict[str, Any], matched: int) -> str:
    """The bulk_actions row that follows this action's progress (in the caller's transaction)."""
    bulk_id = new_id()
    session.execute(insert(BulkAction).values(
        id=bulk_id, api_key_id=flt.api_key_id, action=action, filter=shown_filter, state="running",
        matched=matched, done=0, skipped=0, skipped_secrets_deleted=0, created_at=utcnow()))
    return bulk_id


def _chunks(sessions: sessionmaker[Session], action: Action, flt: JobFilter, upto: datetime) -> Any:
    after = ""
    while True:
        with sessions() as session:
            ids = list(session.scalars(select(JOBS.c.id).where(*flt.where(action), JOBS.c.id > after,
                                                               JOBS.c.created_at <= upto)
                                       .order_by(JOBS.c.id).limit(CHUNK)))
        if not ids:
            return
        yield ids
        if len(ids) < CHUNK:
            return
        after = ids[-1]


@dataclass
class Sinks:
    """What a bulk action does outside SQL, after each chunk's commit."""

    enqueue: Callable[[Sequence[Entry]], None]  # lanes add (intake.Intake.enqueue: falls back to the audit)
    unlane: Callable[[Sequence[Entry]], None]  # canceled queued jobs leave their lanes
    cancel: Callable[[Sequence[str]], None]  # cancel messages for marked submitting/running jobs
    events: Callable[[Sequence[tuple[str, str]]], None]  # job status events


def sinks(client: redis.Redis, enqueue: Callable[[Sequence[Entry]], None],
          send_cancel: Callable[[str], None]) -> Sinks:
    """The usual sinks: lanes and job events in this Redis, cancel messages by `send_cancel` (the
    Enqueuer's), failures of either logged and left to the sweeper and the next poll."""
    lanes = ReadyQueues(client)

    def unlane(entries: Sequence[Entry]) -> None:
        try:
            lanes.remove_many(entries)
        except redis.RedisError as exc:  # the dispatcher's submit drops a canceled job anyway
            log.warning("bulk cancel: %d jobs still in their lanes (%s)", len(entries), type(exc).__name__)

    def cancel(job_ids: Sequence[str]) -> None:
        for job_id in job_ids:
            try:
                send_cancel(job_id)
            except Exception as exc:  # cancel_requested_at is in SQL: the next poll acts on it
                log.warning("cancel enqueue failed job=%s (%s)", job_id, type(exc).__name__)

    return Sinks(enqueue=enqueue, unlane=unlane, cancel=cancel, events=lambda events: publish_many(client, events))


def run(sessions: sessionmaker[Session], sinks: Sinks, action: Action, flt: JobFilter, *,
        bulk_id: str | None = None, on_chunk: Callable[[Progress], None] | None = None) -> Progress:
    """Apply the action to every job the filter matches now, a chunk at a time."""
    upto = utcnow()
    progress = Progress()
    try:
        for ids in _chunks(sessions, action, flt, upto):
            progress.matched += len(ids)
            if action == "retry":
                retry_chunk(sessions, sinks, ids, progress)
            else:
                cancel_chunk(sessions, sinks, ids, progress)
            if bulk_id is not None:
                _record(sessions, bulk_id, progress, None)
            if on_chunk is not None:
                on_chunk(progress)
    except Exception as exc:
        log.exception("bulk %s %s failed after %d jobs", action, bulk_id, progress.done)
        if bulk_id is not None:
            _record(sessions, bulk_id, progress, f"{type(exc).__name__}: {exc}"[:500])
        raise
    if bulk_id is not None:
        _record(sessions, bulk_id, progress, None, finished=True)
    log.info("bulk %s %s: %d done, %d skipped, %d secrets deleted", action, bulk_id, progress.done,
             progress.skipped, progress.skipped_secrets_deleted)
    return progress


def _record(sessions: sessionmaker[Session], bulk_id: str, p: Progress, error: str | None,
            finished: bool = False) -> None:
    values: dict[str, Any] = {"done": p.done, "skipped": p.skipped,
                              "skipped_secrets_deleted": p.skipped_secrets_deleted}
    if error is not None or finished:
        values.update(state="failed" if error else "done", error=error, finished_at=utcnow())
    with sessions.begin() as session:
        session.execute(update(BulkAction).where(BulkAction.id == bulk_id).values(**values))


def retry_chunk(sessions: sessionmaker[Session], sinks: Sinks, ids: Sequence[str], progress: Progress) -> Replayed:
    with sessions.begin() as session:
        done = replay(session, ids, utcnow())
    sinks.enqueue([entry(i, prio, key, created.timestamp()) for i, prio, key, created in done.queued])
    sinks.events([(i, JobStatus.QUEUED.value) for i, *_ in done.queued])
    progress.done += len(done.queued)
    progress.skipped += done.skipped + len(done.prediction_active)
    progress.skipped_secrets_deleted += len(done.secrets_deleted)
    return done


def cancel_chunk(sessions: sessionmaker[Session], sinks: Sinks, ids: Sequence[str], progress: Progress) -> None:
    """Queued jobs are canceled at once (with their callbacks queued in the same transaction);
    submitting and running ones are marked and get a cancel message, as `POST /v1/jobs/{id}/cancel`."""
    check_transition(JobStatus.QUEUED, JobStatus.CANCELED)
    now = utcnow()
    c = JOBS.c
    with sessions.begin() as session:
        canceled = session.execute(
            update(JOBS).where(c.id.in_(list(ids)), c.status == JobStatus.QUEUED.value)
            .values(status=JobStatus.CANCELED.value, finished_at=now, updated_at=now, error_code=None,
                    next_check_at=None)
            .returning(c.id, c.priority, c.api_key_id, c.created_at)).all()
        if canceled:
            _callbacks(session, [r.id for r in canceled], now)
        running = (JobStatus.SUBMITTING.value, JobStatus.RUNNING.value)
        marked = list(session.scalars(
            update(JOBS).where(c.id.in_(list(ids)), c.status.in_(running), c.cancel_requested_at.is_(None))
            .values(cancel_requested_at=now, updated_at=now).returning(c.id)))
    sinks.unlane([entry(r.id, r.priority, r.api_key_id, 0.0) for r in canceled])
    sinks.cancel(marked)
    sinks.events([(r.id, JobStatus.CANCELED.value) for r in canceled])
    progress.done += len(canceled) + len(marked)
    progress.skipped += len(ids) - len(canceled) - len(marked)


def _callbacks(session: Session, job_ids: list[str], now: datetime) -> None:
    """The terminal callbacks of jobs just canceled, in one INSERT ... SELECT (jobs with a URL only)."""
    deliveries = callbacks.DELIVERIES
    jobs = JOBS
    # msg_ + 16 random hex of this chunk + the job id's last 20 (its random part): unique per delivery.
    src = select(literal("msg_" + new_id()[-16:]) + func.substr(jobs.c.id, 13, 20), jobs.c.id, jobs.c.api_key_id,
                 literal(callbacks.TERMINAL_EVENT), jobs.c.callback_url, literal("pending"), literal(0),
                 literal(now, deliveries.c.created_at.type), literal(now, deliveries.c.next_attempt_at.type)
                 ).where(jobs.c.id.in_(job_ids), jobs.c.callback_url.is_not(None), true())
    session.execute(insert(deliveries).from_select(
        ["id", "job_id", "api_key_id", "event", "url", "state", "attempts", "created_at", "next_attempt_at"], src))


