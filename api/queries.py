"""Job reads scoped to the caller: submit keys see only their own jobs (others' look missing)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from fastapi import Request
from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session, selectinload

from genqueue.api.auth import Principal
from genqueue.api.errors import ApiError
from genqueue.intake.metadata import metadata_filters
from genqueue.models.metafilter import MetadataMatches
from genqueue.models.status import JobStatus
from genqueue.models.tables import Batch, Job


def _scoped(stmt: Select[Job], principal: Principal) -> Select[Job]:
    # Outputs are loaded with the jobs here (one extra SELECT for the page), not lazily per job.
    stmt = stmt.options(selectinload(Job.outputs))
    return stmt if principal.sees_all else stmt.where(Job.api_key_id == principal.key_id)


def visible_job(session: Session, job_id: str, principal: Principal) -> Job:
    """The job, freshly read; 404 when it does not exist or the key may not see it."""
    stmt = _scoped(select(Job).where(Job.id == job_id), principal).execution_options(populate_existing=True)
    job = session.scalar(stmt)
    if job is None:
        raise ApiError(404, "not_found", "no such job")
    return job


def visible_jobs(session: Session, ids: list[str], principal: Principal) -> list[Job]:
    """These jobs in the given order (e.g. just accepted by intake)."""
    rows = session.scalars(_scoped(select(Job).where(Job.id.in_(ids)), principal)).all()
    by_id = {j.id: j for j in rows}
    return [by_id[i] for i in ids if i in by_id]


def list_jobs(
    session: Session,
    principal: Principal,
    *,
    limit: int,
    status: JobStatus | None = None,
    model: str | None = None,
    priority: int | None = None,
    after: tuple[datetime, str] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> tuple[list[Job], bool]:
    """One page newest first on (created_at, id), starting after the cursor; also whether more follow."""
    stmt = _scoped(select(Job), principal)
    if status is not None:
        stmt = stmt.where(Job.status == status.value)
    if model:
        stmt = stmt.where(Job.model == model)
    if metadata:
        stmt = stmt.where(MetadataMatches(Job.meta, metadata))
    if priority is not None:
        stmt = stmt.where(Job.priority == priority)
    if after is not None:
        created_at, job_id = after
        stmt = stmt.where(or_(Job.created_at < created_at, and_(Job.created_at == created_at, Job.id < job_id)))
    stmt = stmt.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    rows = list(session.scalars(stmt))
    return rows[:limit], len(rows) > limit


def metadata_query(request: Request) -> dict[str, str]:
    """The request's `metadata.<key>=<value>` query parameters; 422 naming the parameter if one could
    never match a stored tag (too long, NUL, given twice, more than 16)."""
    try:
        return metadata_filters(request.query_params.multi_items())
    except ValueError as exc:
        raise ApiError(422, "validation_error", "invalid metadata filter", exc.args[0]) from None


def visible_batch(session: Session, batch_id: str, principal: Principal) -> Batch:
    """The batch, freshly read; 404 when it does not exist or the key may not see it (like a job)."""
    stmt = select(Batch).where(Batch.id == batch_id).execution_options(populate_existing=True)
    if not principal.sees_all:
        stmt = stmt.where(Batch.api_key_id == principal.key_id)
    batch = session.scalar(stmt)
    if batch is None:
        raise ApiError(404, "not_found", "no such batch")
    return batch


def list_batches(session: Session, principal: Principal, *, limit: int,
                 after: tuple[datetime, str] | None = None) -> tuple[list[Batch], bool]:
    """One page of batches newest first on (created_at, id), scoped like jobs."""
    stmt = select(Batch)
    if not principal.sees_all:
        stmt = stmt.where(Batch.api_key_id == principal.key_id)
    if after is not None:
        created_at, batch_id = after
        stmt = stmt.where(or_(Batch.created_at < created_at,
                              and_(Batch.created_at == created_at, Batch.id < batch_id)))
    rows = list(session.scalars(stmt.order_by(Batch.created_at.desc(), Batch.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit
