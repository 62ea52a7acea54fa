"""Batches: many job requests (NDJSON lines, or a JSON list) validated one by one, written a chunk at a
time through intake's insert (COPY on PostgreSQL) and enqueued a chunk at a time (one publish batch).

At most one chunk of jobs is held at once, so a 50,000-line body costs the memory of 1,000 jobs. A bad
line is refused with its number and reasons, and the others go on; with `all_or_nothing` every chunk is
written in one transaction that is committed only if no line was refused (and enqueued only then).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from genqueue.intake import callback_url as callback_rule
from genqueue.intake.errors import FieldError, IntakeError, field_errors
from genqueue.intake.metadata import metadata_problems
from genqueue.intake.requests import JobRequest
from genqueue.intake.service import Intake, job_problems
from genqueue.models import batches
from genqueue.models.schedule import KEYS as _KEYS
from genqueue.models.schedule import queued_count
from genqueue.models.tables import Job
from genqueue.sched.ready import entry

CHUNK = 1000  # jobs per INSERT/COPY, per commit and per publish batch
MAX_LINES = 50_000
MAX_ERRORS_SHOWN = 1000  # refused lines listed in the answer (all are stored and in the results)
LINE_OVERHEAD = 64 * 1024  # what a line may hold besides its input (target, metadata, options)

# What a batch is fed: (line number, the raw line, its parsed object, or None for a line over the cap).
Item = tuple[int, bytes | Mapping[str, Any] | None]


def options_problems(callback_url: str | None, metadata: Any, *, allow_private: bool = False,
                     can_sign: bool = False) -> list[FieldError]:
    """A batch's options: its metadata, and its callback URL under the same rule as a job's
    (`intake.callback_url`), which needs a key with a signing secret."""
    out = metadata_problems(metadata)
    if callback_url is not None:
        problem = callback_rule.problem(callback_url, allow_private)
        if problem:
            out.append(FieldError("callback_url", problem))
        elif not can_sign:
            out.append(FieldError("callback_url", "needs an API key with a callback signing secret "
                                                  "(genqueue keys rotate-callback-secret)"))
    return out


@dataclass(frozen=True)
class LineError:
    line: int
    field: str
    reason: str


@dataclass
class BatchOutcome:
    id: str
    created_at: datetime
    lines: int
    accepted: int
    rejected: int
    errors: list[LineError] = field(default_factory=list)  # the first MAX_ERRORS_SHOWN
    truncated: bool = False


def parse_line(raw: bytes | Mapping[str, Any] | None, batch_meta: Mapping[str, str],
               max_input_bytes: int) -> tuple[JobRequest | None, list[FieldError]]:
    """One line as a job request, or its field errors (paths relative to the line). Pure: the CLI checks
    a whole file with it before submitting anything."""
    if raw is None:
        return None, [FieldError("line", f"must be at most {max_input_bytes + LINE_OVERHEAD} bytes")]
    if isinstance(raw, bytes):
        try:
            raw = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None, [FieldError("line", "is not valid JSON")]
    if not isinstance(raw, Mapping):
        return None, [FieldError("line", "must be a JSON object (one job request)")]
    try:
        req = JobRequest.model_validate(raw)
    except ValidationError as exc:
        return None, field_errors(exc.errors())
    if batch_meta:
        # The batch's tags are every job's too (the job's own win), so filters find its jobs.
        own = req.metadata if isinstance(req.metadata, dict) else {}
        req = req.model_copy(update={"metadata": {**batch_meta, **own}})
    problems, _ = job_problems(req, max_input_bytes)
    return req, problems


class BatchWriter:
    """Feed it items with `add` (any number of calls), then `finish`; `close` in any case."""

    def __init__(self, intake: Intake, *, api_key_id: str | None, callback_url: str | None = None,
                 metadata: Mapping[str, str] | None = None, all_or_nothing: bool = False, chunk: int = CHUNK,
                 max_lines: int = MAX_LINES, max_queued: int | None = None) -> None:
        self._intake = intake
        self._key = api_key_id
        self._callback_url = callback_url
        self._meta = dict(metadata or {})
        self._atomic = all_or_nothing
        self._chunk = chunk
        self._max_lines = max_lines
        self._max_queued = max_queued if api_key_id is not None else None
        self._session: Session | None = None  # all_or_nothing: the one transaction
        self._batch: tuple[str, datetime] | None = None
        self._pending: list[tuple[int, JobRequest]] = []
        self._pending_errors: list[tuple[int, list[FieldError]]] = []
        self.lines = self.accepted = self.rejected = 0
        self.shown: list[LineError] = []

    @property
    def max_line_bytes(self) -> int:
        return self._intake.max_input_bytes + LINE_OVERHEAD

    @property
    def batch_id(self) -> str | None:
        return self._batch[0] if self._batch else None

    def add(self, items: Iterable[Item]) -> None:
        for line, raw in items:
            self.lines += 1
            req, problems = self._parse(raw)
            if self.lines > self._max_lines:
                problems = [FieldError("line", f"is beyond the {self._max_lines}-line limit of a batch")]
            if problems:
                self.rejected += 1
                self._pending_errors.append((line, problems))
                room = MAX_ERRORS_SHOWN - len(self.shown)
                self.shown += [LineError(line, f.field, f.reason) for f in problems[:max(room, 0)]]
            else:
                assert req is not None
                self._pending.append((line, req))
            if len(self._pending) + len(self._pending_errors) >= self._chunk:
                self._flush()

    def finish(self, *, truncated: bool = False) -> BatchOutcome:
        """Write what is pending and seal the batch. With `all_or_nothing` a refused line (or a body
        that ended early) rolls everything back: IntakeError 422 listing `lines.<n>.<field>`."""
        if self.lines == 0 and not truncated:
            raise IntakeError(422, "validation_error", "the batch has no jobs",
                              [FieldError("jobs", "must hold at least one job request")])
        self._flush()  # before the check below: the last chunk may still be refused (max_queued)
        if self._atomic and (self.rejected or truncated):
            self._rollback()
            fields = [FieldError(f"lines.{e.line}.{e.field}", e.reason) for e in self.shown]
            reason = f"{self.rejected} of {self.lines} lines were refused" if self.rejected else "the body ended early"
            raise IntakeError(422, "validation_error", f"{reason}; nothing was accepted (all_or_nothing)",
                              fields or [FieldError("body", "ended before the last line")])
        batch_id, created_at = self._ensure_batch()
        if self._atomic:
            assert self._session is not None
            batches.seal(self._session, batch_id, lines=self.lines, rejected=self.rejected, truncated=truncated)
            self._session.commit()
            self._enqueue_all(batch_id)
        else:
            with self._intake.sessions.begin() as session:
                batches.seal(session, batch_id, lines=self.lines, rejected=self.rejected, truncated=truncated)
        return BatchOutcome(batch_id, created_at, self.lines, self.accepted, self.rejected, self.shown, truncated)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _parse(self, raw: bytes | Mapping[str, Any] | None) -> tuple[JobRequest | None, list[FieldError]]:
        return parse_line(raw, self._meta, self._intake.max_input_bytes)

    def _ensure_batch(self) -> tuple[str, datetime]:
        if self._batch is None:
            if self._atomic:
                self._session = self._intake.sessions()
                b = batches.create_batch(self._session, api_key_id=self._key, callback_url=self._callback_url,
                                         meta=self._meta)
            else:
                with self._intake.sessions.begin() as session:
                    b = batches.create_batch(session, api_key_id=self._key, callback_url=self._callback_url,
                                             meta=self._meta)
            self._batch = (b.id, b.created_at)
        return self._batch

    def _flush(self) -> None:
        if not self._pending and not self._pending_errors:
            return
        batch_id, _ = self._ensure_batch()
        pending, errors = self._pending, self._pending_errors
        self._pending, self._pending_errors = [], []
        if self._atomic:
            assert self._session is not None
            pending = self._within_quota(self._session, pending)
            refusal = self._intake.spend_refusal(self._session, self._key) if pending else None
            if refusal is not None:
                self._refuse(pending, f"was not accepted: {refusal} (spend_limit)", None)
            if self.rejected:
                return  # it will be rolled back: stop writing, keep counting
            self.accepted += len(self._intake.insert_numbered(self._session, pending, api_key_id=self._key,
                                                              batch_id=batch_id))
            return
        with self._intake.sessions() as session:
            if pending and batches.cancel_requested(session, batch_id):
                # Canceled while its body was still arriving: the lines after that are not accepted.
                pending = self._refuse(pending, "was not accepted: the batch was canceled", errors)
            pending = self._within_quota(session, pending, errors)
            refusal = self._intake.spend_refusal(session, self._key) if pending else None
            if refusal is not None:
                pending = self._refuse(pending, f"was not accepted: {refusal} (spend_limit)", errors)
            entries = self._intake.insert_numbered(session, pending, api_key_id=self._key, batch_id=batch_id)
            batches.touch(session, batch_id)
            batches.record_errors(session, batch_id, [
                (line, [{"field": f.field, "reason": f.reason} for f in fields])
                for line, fields in sorted(errors, key=lambda e: e[0])])
            session.commit()
        self.accepted += len(entries)
        self._intake.enqueue(entries)

    def _within_quota(self, session: Session, pending: list[tuple[int, JobRequest]],
                      errors: list[tuple[int, list[FieldError]]] | None = None) -> list[tuple[int, JobRequest]]:
        """The lines that fit under the key's max_queued (its row locked until this chunk commits, as
        `Intake.submit` does); the others are refused with the limit named."""
        if self._max_queued is None or not pending or self._key is None:
            return pending
        session.execute(select(_KEYS.c.id).where(_KEYS.c.id == self._key).with_for_update())
        room = max(self._max_queued - queued_count(session, self._key), 0)
        if room >= len(pending):
            return pending
        reason = f"was not accepted: this API key may have at most {self._max_queued} queued jobs (max_queued)"
        self._refuse(pending[room:], reason, errors)
        return pending[:room]

    def _refuse(self, pending: list[tuple[int, JobRequest]], reason: str,
                errors: list[tuple[int, list[FieldError]]] | None) -> list[tuple[int, JobRequest]]:
        """Count these lines as refused for `reason` (recorded with `errors`); returns none of them."""
        for line, _ in pending:
            problem = [FieldError("line", reason)]
            self.rejected += 1
            if errors is not None:
                errors.append((line, problem))
            if len(self.shown) < MAX_ERRORS_SHOWN:
                self.shown.append(LineError(line, "line", reason))
        return []

    def _enqueue_all(self, batch_id: str) -> None:
        after = -1
        with self._intake.sessions() as session:
            while True:
                rows = session.execute(select(Job.id, Job.batch_seq, Job.priority, Job.created_at).where(
                    Job.batch_id == batch_id, Job.batch_seq > after).order_by(Job.batch_seq).limit(self._chunk)).all()
                self._intake.enqueue([entry(r.id, r.priority, self._key, r.created_at.timestamp()) for r in rows])
                if len(rows) < self._chunk:
                    return
                after = rows[-1].batch_seq

    def _rollback(self) -> None:
        if self._session is not None:
            self._session.rollback()
        self._batch = None
