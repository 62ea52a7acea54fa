"""Record jobs in SQL (secrets sealed), commit, and only then enqueue: SQL is the source of truth.

If the enqueue fails (Redis away), the jobs stay `queued` and the sweeper enqueues them later, so an
accepted job is never lost.

Rows are written with Core (one INSERT, or an executemany), and a PostgreSQL batch with COPY: the ORM's
unit of work cost ~0.2 ms a row, and psycopg re-parsing SQLAlchemy's 1000-row multi-VALUES INSERT (too
long for its statement cache) was a quarter of the batch route's time; COPY costs ~0.03 ms a row.
Callers get `AcceptedJob`s, the rows as written, so the API answers without reading the jobs back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from cryptography.fernet import MultiFernet
from sqlalchemy import Connection, Table, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from genqueue.core.crypto import SecretPath, Split, encrypt_secrets, masked_input, secret_strings, split_secrets
from genqueue.core.logs import register_secrets
from genqueue.core.pricing import Price, PriceTable, SpendCap, cap_reached, spend_window
from genqueue.intake import callback_url
from genqueue.intake.errors import FieldError, IntakeError
from genqueue.intake.jsoncheck import DEFAULT_MAX_INPUT_BYTES, json_problems, larger_than
from genqueue.intake.metadata import metadata_problems
from genqueue.intake.requests import JobRequest
from genqueue.intake.schemas import validator_for
from genqueue.models.base import utcnow
from genqueue.models.costs import spend_by_key
from genqueue.models.ids import new_id
from genqueue.models.jobs import QUEUED_AUDIT
from genqueue.models.schedule import KEYS as _KEYS
from genqueue.models.schedule import queued_count, spend_cap
from genqueue.models.tables import Job
from genqueue.sched.ready import Entry, entry

log = logging.getLogger(__name__)

MAX_BATCH = 1000

_JOBS = cast(Table, Job.__table__)
# Every column intake writes, in COPY order. The others are NULL until a worker fills them.
_COLUMNS = ("id", "status", "target", "model", "version", "deployment", "input_public", "secret_names",
            "input_sealed", "api_key_id", "idempotency_key", "request_hash", "created_at", "updated_at",
            "deadline_at", "next_check_at", "polls", "attempts", "deliveries", "priority",
            "callback_url", "callback_on_running", "meta", "batch_id", "batch_seq",
            "retry_max_attempts", "retry_on", "attempt", "retries_left", "deadline_seconds", "expires_at")
_JSON_COLUMNS = frozenset({"input_public", "secret_names", "meta", "retry_on"})
_COPY_SQL = f"COPY jobs ({', '.join(_COLUMNS)}) FROM STDIN"
_INSERT = _JOBS.insert()  # built once: constructing it per call showed up in the single-submit profile


@dataclass(frozen=True, slots=True)
class AcceptedJob:
    """A job as intake recorded it (or, on an idempotent replay, as it was found): never its secrets."""

    id: str
    status: str
    model: str | None
    version: str | None
    deployment: str | None
    input_public: dict[str, Any]
    secret_names: list[SecretPath]
    created_at: datetime
    deadline_at: datetime | None
    priority: int
    meta: dict[str, str] | None = None
    expires_at: datetime | None = None

    @classmethod
    def of(cls, job: Job) -> AcceptedJob:
        return cls.from_row({f: getattr(job, f) for f in _ACCEPTED_FIELDS})

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AcceptedJob:
        """From intake's row dict (or any mapping of these fields); secret_names as a list."""
        return cls(**{f: row[f] for f in _ACCEPTED_FIELDS if f != "secret_names"},
                   secret_names=list(row["secret_names"] or []))


_ACCEPTED_FIELDS = tuple(f.name for f in dataclasses.fields(AcceptedJob))


def _hashed_body(requests: Sequence[JobRequest], splits: Sequence[Split]) -> list[dict[str, Any]]:
    # Each secret value is replaced by the mask at its place: where secrets were stays part of the
    # request, what they were does not (see `request_hash`).
    return [{**r.model_dump(mode="json", exclude_none=True, exclude={"input"}),
             "input": masked_input(s.public, s.paths)} for r, s in zip(requests, splits, strict=True)]


def request_hash(requests: Sequence[JobRequest], secret_fields: frozenset[str],
                 splits: Sequence[Split] | None = None) -> str:
    """The idempotency digest: sha256 over the body with every secret value masked.

    Stored in the clear, a digest over the plaintext secret would let anyone with a database dump
    confirm a guessed secret offline; over the masked body it says nothing the public input does not.
    So two bodies that differ only in a secret value are the same request: an Idempotency-Key replay
    with another api_key returns the job made first (with the first key). The key is scoped to the
    caller's genqueue API key, so only the same caller can replay, and telling secrets apart would
    need a secret-derived value at rest, which is what this avoids."""
    if splits is None:
        splits = [split_secrets(r.input, secret_fields) for r in requests]
    body = _hashed_body(requests, splits)
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _input_errors(req: JobRequest, prefix: str, max_input_bytes: int) -> tuple[list[FieldError], bool]:
    """(field errors, whether the input is too large) for one job; the model's own checks run only on
    an input that is plain, storable JSON."""
    tags = metadata_problems(req.metadata, prefix + "metadata")
    problems = json_problems(req.input, prefix + "input")
    if problems:
        return tags + problems, False
    if larger_than(req.input, max_input_bytes):
        return [*tags, FieldError(prefix + "input", f"must be at most {max_input_bytes} bytes as JSON")], True
    check = validator_for(req.model_name, req.version)
    if check is None:
        return tags, False
    return tags + [FieldError(prefix + e.field, e.reason) for e in check(req.input)], False


def job_problems(req: JobRequest, max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES) -> tuple[list[FieldError], bool]:
    """One job's field errors (paths relative to the job) and whether its input is too large."""
    return _input_errors(req, "", max_input_bytes)


@dataclass(frozen=True, slots=True)
class CallbackKey:
    """What intake needs of the submitting key for callbacks: its default URL, and whether it has a
    signing secret (a callback that cannot be signed is refused at submit, not failed later)."""

    default_url: str | None = None
    can_sign: bool = False


def _callback_errors(req: JobRequest, prefix: str, key: CallbackKey, allow_private: bool) -> list[FieldError]:
    url = req.callback_url or key.default_url
    errors: list[FieldError] = []
    if req.callback_events is not None:
        if url is None:
            errors.append(FieldError(prefix + "callback_events", "needs a callback_url"))
        elif "terminal" not in req.callback_events:
            errors.append(FieldError(prefix + "callback_events", 'must include "terminal"'))
    if url is None:
        return errors
    if req.callback_url is not None:
        reason = callback_url.problem(req.callback_url, allow_private)
        if reason is not None:
            errors.append(FieldError(prefix + "callback_url", reason))
    if not key.can_sign:
        errors.append(FieldError(prefix + "callback_url", "needs an API key with a callback signing secret "
                                 "(genqueue keys rotate-callback-secret)"))
    return errors


def validate(requests: Sequence[JobRequest], *, batch: bool, max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
             key: CallbackKey = CallbackKey(), callback_allow_private: bool = False) -> None:
    if not requests:
        raise IntakeError(422, "validation_error", "no jobs given", [FieldError("jobs", "must not be empty")])
    if len(requests) > MAX_BATCH:
        raise IntakeError(422, "validation_error", f"at most {MAX_BATCH} jobs per batch",
                          [FieldError("jobs", f"at most {MAX_BATCH} items")])
    errors: list[FieldError] = []
    too_large = False
    for i, req in enumerate(requests):
        prefix = f"jobs.{i}." if batch else ""
        found, large = _input_errors(req, prefix, max_input_bytes)
        errors += found + _callback_errors(req, prefix, key, callback_allow_private)
        too_large = too_large or large
    if too_large:
        raise IntakeError(413, "payload_too_large", "an input is too large", errors)
    if errors:
        raise IntakeError(422, "validation_error", "input validation failed", errors)


def insert_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """INSERT the rows (dicts keyed by `_COLUMNS`); a duplicate (api_key_id, idempotency_key) raises
    SQLAlchemy's IntegrityError. On PostgreSQL this is always one statement, one INSERT or one COPY, so it
    is all-or-nothing even on the API's autocommit connection; elsewhere an executemany in the session's
    transaction."""
    if conn.dialect.name != "postgresql" or len(rows) == 1:
        conn.execute(_INSERT, rows)
        return
    driver = conn.connection.driver_connection
    assert driver is not None
    try:
        with driver.cursor() as cur, cur.copy(_COPY_SQL) as copy:
            for row in rows:
                copy.write_row([json.dumps(row[c]) if c in _JSON_COLUMNS and row[c] is not None else row[c]
                                for c in _COLUMNS])
    except conn.dialect.loaded_dbapi.IntegrityError as exc:
        raise IntegrityError(_COPY_SQL, None, exc) from exc


def check_quota(session: Session, api_key_id: str, max_queued: int, adding: int) -> None:
    """429 `quota_exceeded` when `adding` more jobs would put the key over `max_queued` queued jobs.
    The key's row is locked (FOR UPDATE; PostgreSQL) until the caller commits its insert."""
    session.execute(select(_KEYS.c.id).where(_KEYS.c.id == api_key_id).with_for_update())
    queued = queued_count(session, api_key_id)
    if queued + adding > max_queued:
        session.rollback()
        raise IntakeError(429, "quota_exceeded",
                          f"this API key may have at most {max_queued} queued jobs; {queued} are queued and "
                          f"this request adds {adding}",
                          [FieldError("max_queued", f"limit {max_queued} reached ({queued} queued)")])


@dataclass(frozen=True, slots=True)
class KeyTerms:
    """What the submitting key's row says about its new jobs: their retention and its spend cap."""

    retention_days: int | None = None
    spend_cap: SpendCap | None = None


def key_terms(session: Session, api_key_id: str | None) -> KeyTerms:
    if api_key_id is None:
        return KeyTerms()
    row = session.execute(select(_KEYS.c.retention_days, _KEYS.c.spend_limit, _KEYS.c.spend_period)
                          .where(_KEYS.c.id == api_key_id)).one_or_none()
    if row is None:
        return KeyTerms()
    return KeyTerms(row.retention_days, spend_cap(row.spend_limit, row.spend_period))


class Intake:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        cipher: MultiFernet,
        secret_fields: frozenset[str],
        enqueue: Callable[[Sequence[Entry]], None],
        default_deadline: float,
        *,
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
        callback_allow_private: bool = False,
        retention_days: int = 30,
        prices: PriceTable | None = None,
    ) -> None:
        self._sessions = session_factory
        self._cipher = cipher
        self._secret_fields = secret_fields
        self._enqueue = enqueue
        self._default_deadline = default_deadline
        self._max_input_bytes = max_input_bytes
        self._callback_allow_private = callback_allow_private
        self._retention_days = retention_days
        self._prices = prices or PriceTable(Price())

    def submit(
        self,
        requests: Sequence[JobRequest],
        *,
        api_key_id: str | None = None,
        idempotency_key: str | None = None,
        batch: bool = False,
        session: Session | None = None,
        max_queued: int | None = None,
        callback_key: CallbackKey = CallbackKey(),
    ) -> tuple[list[AcceptedJob], bool]:
        """Accept jobs all-or-nothing. Returns (jobs, created); created is False on an idempotent replay.

        `session`: write in this session's transaction (the API's, which already looked up the key) and
        commit it; by default intake uses a session of its own. `max_queued`: the key's limit on queued
        jobs; the check and the insert then run in a transaction of intake's own that locks the key's
        row, so concurrent submissions of one key cannot both pass it. `callback_key`: the submitting key's
        callback default and whether it can sign (`callback_url` is refused without a secret)."""
        validate(requests, batch=batch, max_input_bytes=self._max_input_bytes, key=callback_key,
                 callback_allow_private=self._callback_allow_private)
        if session is None or (max_queued is not None and api_key_id is not None):
            with self._sessions() as own:
                return self._submit(own, requests, api_key_id, idempotency_key, batch, max_queued,
                                    callback_key)
        return self._submit(session, requests, api_key_id, idempotency_key, batch, None, callback_key)

    def _submit(self, session: Session, requests: Sequence[JobRequest], api_key_id: str | None,
                idempotency_key: str | None, batch: bool, max_queued: int | None,
                callback_key: CallbackKey = CallbackKey()) -> tuple[list[AcceptedJob], bool]:
        splits = [split_secrets(r.input, self._secret_fields) for r in requests]
        # From here on the secrets are in the clear in this context: mask them in anything it logs.
        register_secrets(s for split in splits for v in split.values for s in secret_strings(v))
        digest: str | None = None
        keys: list[str | None] = [None] * len(requests)
        if idempotency_key:
            digest = request_hash(requests, self._secret_fields, splits)
            keys = [self._idem_key(idempotency_key, i, batch) for i in range(len(requests))]
            existing = self._replay(session, api_key_id, keys, digest)
            if existing is not None:
                return existing, False
        terms = key_terms(session, api_key_id)
        refusal = self.spend_refusal(session, api_key_id, terms)
        if refusal is not None:
            session.rollback()
            raise IntakeError(429, "spend_limit_reached", refusal, [FieldError("spend_limit", refusal)])
        if max_queued is not None and api_key_id is not None:
            check_quota(session, api_key_id, max_queued, len(requests))
        now = utcnow()
        # A batch's jobs are created a microsecond apart: (created_at, id) is then the order they were
        # given in, which the lanes (FIFO by created_at) and a rebuild of them from SQL both keep.
        rows = [self._row(r, api_key_id, key, digest, now + timedelta(microseconds=i), split,
                          callback_key.default_url, terms.retention_days)
                for i, (r, split, key) in enumerate(zip(requests, splits, keys, strict=True))]
        try:
            insert_rows(session.connection(), rows)
            session.commit()
        except IntegrityError:
            session.rollback()
            # A concurrent request with the same idempotency key won the insert.
            if idempotency_key:
                assert digest is not None
                existing = self._replay(session, api_key_id, keys, digest)
                if existing is not None:
                    return existing, False
            raise
        ids = [row["id"] for row in rows]
        try:
            self._enqueue([entry(r["id"], r["priority"], api_key_id, r["created_at"].timestamp()) for r in rows])
        except Exception as exc:  # Redis away: due for the sweeper's audit at once, which puts them in their lanes
            log.warning("enqueue failed for %d jobs (%s); the sweeper will pick them up", len(ids), type(exc).__name__)
            self._due_now(ids, now)
        log.info("accepted %d jobs first=%s", len(ids), ids[0])
        return [AcceptedJob.from_row(row) for row in rows], True

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self._sessions

    @property
    def max_input_bytes(self) -> int:
        return self._max_input_bytes

    def insert_numbered(self, session: Session, items: Sequence[tuple[int, JobRequest]], *, api_key_id: str | None,
                        batch_id: str) -> list[Entry]:
        """Write already validated jobs of a batch (line number, request) in the session's transaction,
        one INSERT/COPY; the caller commits, then `enqueue`s them. The batch path (intake/batches.py)."""
        splits = [split_secrets(r.input, self._secret_fields) for _, r in items]
        register_secrets(s for split in splits for v in split.values for s in secret_strings(v))
        now = utcnow()
        retention = key_terms(session, api_key_id).retention_days if items else None
        rows = []
        for i, ((seq, req), split) in enumerate(zip(items, splits, strict=True)):
            # A microsecond apart, like `submit`: the lanes (FIFO by created_at) keep the input order.
            row = self._row(req, api_key_id, None, None, now + timedelta(microseconds=i), split,
                            key_retention_days=retention)
            row["batch_id"], row["batch_seq"] = batch_id, seq
            rows.append(row)
        if rows:
            insert_rows(session.connection(), rows)
        return [entry(r["id"], r["priority"], api_key_id, r["created_at"].timestamp()) for r in rows]

    def spend_refusal(self, session: Session, api_key_id: str | None, terms: KeyTerms | None = None,
                      now: datetime | None = None) -> str | None:
        """Why the key may submit nothing now (its spend in the window reached its cap), or None."""
        terms = terms if terms is not None else key_terms(session, api_key_id)
        cap = terms.spend_cap
        if cap is None or api_key_id is None:
            return None
        start, reset = spend_window(cap.period, now or utcnow())
        spent = spend_by_key(session, self._prices, start, [api_key_id]).get(api_key_id, 0.0)
        if not cap_reached(cap, spent):
            return None
        return (f"this API key's spend limit of {cap.limit:.2f} USD per {cap.period.value} is reached "
                f"({spent:.4f} USD spent since {start.isoformat()}); it resets at {reset.isoformat()}")

    def enqueue(self, entries: Sequence[Entry]) -> None:
        """Put committed jobs in their lanes; when Redis is away they are made due for the sweeper's audit."""
        if not entries:
            return
        try:
            self._enqueue(entries)
        except Exception as exc:
            log.warning("enqueue failed for %d jobs (%s); the sweeper will pick them up", len(entries),
                        type(exc).__name__)
            self._due_now([e.job_id for e in entries], utcnow())

    def _due_now(self, ids: list[str], now: datetime) -> None:
        try:
            with self._sessions.begin() as session:
                session.execute(update(_JOBS).where(_JOBS.c.id.in_(ids), _JOBS.c.status == "queued")
                                .values(next_check_at=now))
        except Exception as exc:  # the audit still finds them, QUEUED_AUDIT later
            log.warning("could not mark %d unqueued jobs due (%s)", len(ids), type(exc).__name__)

    @staticmethod
    def _idem_key(key: str | None, index: int, batch: bool) -> str | None:
        if key is None:
            return None
        return f"{key}#{index}" if batch else key

    @staticmethod
    def _replay(session: Session, api_key_id: str | None, keys: list[str | None],
                digest: str) -> list[AcceptedJob] | None:
        rows = list(session.scalars(select(Job).where(Job.api_key_id == api_key_id, Job.idempotency_key.in_(keys))))
        if not rows:
            return None
        if any(r.request_hash != digest for r in rows) or len(rows) != len(keys):
            raise IntakeError(409, "idempotency_conflict",
                              "this Idempotency-Key was used with a different request body",
                              [FieldError("Idempotency-Key", "already used with a different body")])
        order = {k: i for i, k in enumerate(keys)}
        return [AcceptedJob.of(r) for r in sorted(rows, key=lambda r: order[r.idempotency_key])]

    def _row(self, req: JobRequest, api_key_id: str | None, key: str | None, digest: str | None,
             now: datetime, split: Split | None = None, default_callback: str | None = None,
             key_retention_days: int | None = None) -> dict[str, Any]:
        if split is None:
            split = split_secrets(req.input, self._secret_fields)
        deadline = req.deadline_seconds or self._default_deadline
        # The job's own retention, else its key's, else the default; fixed now (the sweeper's index).
        days = next(d for d in (req.retention_days, key_retention_days, self._retention_days) if d is not None)
        return {
            "id": new_id(),
            "status": "queued",
            "target": req.target,
            "model": req.model_name,
            "version": req.version,
            "deployment": req.deployment,
            "input_public": split.public,
            "secret_names": split.paths,
            "input_sealed": encrypt_secrets(self._cipher, split.sealed, split),
            "api_key_id": api_key_id,
            "idempotency_key": key,
            "request_hash": digest if key else None,
            "created_at": now,
            "updated_at": now,
            "deadline_at": now + timedelta(seconds=deadline),
            # Queued jobs wait in their lanes (genqueue.sched.ready); this is when the sweeper checks
            # that a job still waiting is really there (worker.services.sweep).
            "next_check_at": now + QUEUED_AUDIT,
            "priority": req.priority,
            "polls": 0,
            "attempts": 0,
            "deliveries": 0,
            "callback_url": req.callback_url or default_callback,
            "callback_on_running": "running" in (req.callback_events or ()),
            "meta": req.metadata or None,
            "batch_id": None,
            "batch_seq": None,
            "retry_max_attempts": req.retry.max_attempts if req.retry else 1,
            "retry_on": list(dict.fromkeys(req.retry.on)) if req.retry else None,
            "attempt": 1,
            "retries_left": req.retry.max_attempts - 1 if req.retry else 0,
            "deadline_seconds": deadline,
            "expires_at": now + timedelta(days=days),
        }
