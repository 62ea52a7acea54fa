"""Job reads scoped to the caller: submit keys see only their own jobs (others' look missing)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session, selectinload

from genqueue.api.auth import Principal
from genqueue.api.errors import ApiError
from genqueue.models.status import JobStatus
from genqueue.models.tables import Job


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
) -> tuple[list[Job], bool]:
    """One page newest first on (created_at, id), starting after the cursor; also whether more follow."""
    stmt = _scoped(select(Job), principal)
    if status is not None:
        stmt = stmt.where(Job.status == status.value)
    if model:
        stmt = stmt.where(Job.model == model)
    if priority is not None:
        stmt = stmt.where(Job.priority == priority)
    if after is not None:
        created_at, job_id = after
        stmt = stmt.where(or_(Job.created_at < created_at, and_(Job.created_at == created_at, Job.id < job_id)))
    stmt = stmt.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    rows = list(session.scalars(stmt))
    return rows[:limit], len(rows) > limit
