"""Record jobs in SQL (secrets sealed), commit, and only then enqueue: SQL is the source of truth.

If the enqueue fails (Redis away), the jobs stay `queued` and the sweeper enqueues them later, so an
accepted job is never lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from cryptography.fernet import MultiFernet
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.crypto import encrypt_secrets, split_input
from intake.errors import FieldError, IntakeError
from intake.requests import JobRequest
from intake.schemas import validator_for
from models.base import utcnow
from models.tables import Job

log = logging.getLogger(__name__)

MAX_BATCH = 1000


def request_hash(requests: Sequence[JobRequest]) -> str:
    body = [r.model_dump(mode="json", exclude_none=True) for r in requests]
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def validate(requests: Sequence[JobRequest], *, batch: bool) -> None:
    if not requests:
        raise IntakeError(422, "validation_error", "no jobs given", [FieldError("jobs", "must not be empty")])
    if len(requests) > MAX_BATCH:
        raise IntakeError(422, "validation_error", f"at most {MAX_BATCH} jobs per batch",
                          [FieldError("jobs", f"at most {MAX_BATCH} items")])
    errors: list[FieldError] = []
    for i, req in enumerate(requests):
        check = validator_for(req.model_name, req.version)
        if check is None:
            continue
        prefix = f"jobs.{i}." if batch else ""
        errors += [FieldError(prefix + e.field, e.reason) for e in check(req.input)]
    if errors:
        raise IntakeError(422, "validation_error", "input validation failed", errors)


class Intake:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        cipher: MultiFernet,
        secret_fields: frozenset[str],
        enqueue: Callable[[list[str]], None],
        default_deadline: float,
    ) -> None:
        self._sessions = session_factory
        self._cipher = cipher
        self._secret_fields = secret_fields
        self._enqueue = enqueue
        self._default_deadline = default_deadline

    def submit(
        self,
        requests: Sequence[JobRequest],
        *,
        api_key_id: str | None = None,
        idempotency_key: str | None = None,
        batch: bool = False,
    ) -> tuple[list[Job], bool]:
        """Accept jobs all-or-nothing. Returns (jobs, created); created is False on an idempotent replay."""
        validate(requests, batch=batch)
        digest = request_hash(requests)
        keys = [self._idem_key(idempotency_key, i, batch) for i in range(len(requests))]
        if idempotency_key:
            existing = self._replay(api_key_id, keys, digest)
            if existing is not None:
                return existing, False
        now = utcnow()
        jobs = [self._row(r, api_key_id, key, digest, now) for r, key in zip(requests, keys, strict=True)]
        try:
            with self._sessions.begin() as session:
                session.add_all(jobs)
        except IntegrityError:
            # A concurrent request with the same idempotency key won the insert.
            if idempotency_key:
                existing = self._replay(api_key_id, keys, digest)
                if existing is not None:
                    return existing, False
            raise
        ids = [j.id for j in jobs]
        try:
            self._enqueue(ids)
        except Exception as exc:  # broker down: the sweeper enqueues queued jobs later
            log.warning("enqueue failed for %d jobs (%s); the sweeper will pick them up", len(ids), type(exc).__name__)
        log.info("accepted %d jobs first=%s", len(ids), ids[0])
        return jobs, True

    @staticmethod
    def _idem_key(key: str | None, index: int, batch: bool) -> str | None:
        if key is None:
            return None
        return f"{key}#{index}" if batch else key

    def _replay(self, api_key_id: str | None, keys: list[str | None], digest: str) -> list[Job] | None:
        with self._sessions() as session:
            rows = list(
                session.scalars(select(Job).where(Job.api_key_id == api_key_id, Job.idempotency_key.in_(keys)))
            )
        if not rows:
            return None
        if any(r.request_hash != digest for r in rows) or len(rows) != len(keys):
            raise IntakeError(409, "idempotency_conflict",
                              "this Idempotency-Key was used with a different request body",
                              [FieldError("Idempotency-Key", "already used with a different body")])
        order = {k: i for i, k in enumerate(keys)}
        return sorted(rows, key=lambda r: order[r.idempotency_key])

    def _row(self, req: JobRequest, api_key_id: str | None, key: str | None, digest: str, now: Any) -> Job:
        public, secret = split_input(req.input, self._secret_fields)
        deadline = req.deadline_seconds or self._default_deadline
        return Job(
            status="queued",
            target=req.target,
            model=req.model_name,
            version=req.version,
            deployment=req.deployment,
            input_public=public,
            secret_names=sorted(secret),
            input_sealed=encrypt_secrets(self._cipher, secret),
            api_key_id=api_key_id,
            idempotency_key=key,
            request_hash=digest if key else None,
            created_at=now,
            updated_at=now,
            deadline_at=now + timedelta(seconds=deadline),
            next_check_at=now,
        )
