"""Read queries for ops: counts by status, live gauges and percentiles of every timing, computed in SQL.

One package of modules (this one, `stats_series`, `stats_report`) so the demo summary, `genqueue stats`,
`/v1/stats`, `/metrics` and the dashboard all report the same figures for the same jobs. PostgreSQL
computes percentiles with percentile_cont; SQLite (the embedded default, small data) sorts the column in
SQL and we pick the ranks with the same interpolation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Float, and_, case, func, select
from sqlalchemy.orm import Session

from genqueue.models.metafilter import MetadataMatches
from genqueue.models.status import ACTIVE, JobStatus
from genqueue.models.tables import Job

TIMINGS = ("queue_time", "start_time", "predict_time", "total_time", "detection_lag", "storage_time",
           "end_to_end_time")
QUANTILES = (0.5, 0.95, 0.99)
STATUSES = tuple(s.value for s in JobStatus)
ACTIVE_STATUSES = tuple(s.value for s in JobStatus if s in ACTIVE)


@dataclass(frozen=True)
class Filters:
    since: datetime | None = None
    until: datetime | None = None
    model: str | None = None
    api_key_id: str | None = None
    job_ids: Sequence[str] | None = None
    metadata: Mapping[str, str] | None = None
    batch_id: str | None = None

    def scope(self) -> list[ColumnElement[bool]]:
        """The filters that are not about time (live gauges ignore the window)."""
        out: list[ColumnElement[bool]] = []
        if self.model:
            out.append(Job.model == self.model)
        if self.api_key_id:
            out.append(Job.api_key_id == self.api_key_id)
        if self.job_ids is not None:
            out.append(Job.id.in_(list(self.job_ids)))
        if self.metadata:
            out.append(MetadataMatches(Job.meta, self.metadata))
        if self.batch_id is not None:
            out.append(Job.batch_id == self.batch_id)
        return out

    def clauses(self, column: Any = None) -> list[ColumnElement[bool]]:
        """Scope plus the window on `column` (default: created_at)."""
        col = Job.created_at if column is None else column
        out = self.scope()
        if self.since is not None:
            out.append(col >= self.since)
        if self.until is not None:
            out.append(col < self.until)
        return out


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def as_utc(value: Any) -> datetime | None:
    """A timestamp from an aggregate (SQLite may hand back naive values or strings) as aware UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _interpolate(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks: the same definition as percentile_cont."""
    pos = (len(values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def _pick(values: list[float], qs: Sequence[float]) -> dict[str, float | None]:
    out: dict[str, float | None] = {"count": float(len(values))}
    for q in qs:
        out[f"p{round(q * 100)}"] = _interpolate(values, q) if values else None
    return out


def status_counts(session: Session, f: Filters) -> dict[str, int]:
    rows = session.execute(select(Job.status, func.count()).where(*f.clauses()).group_by(Job.status)).all()
    return {status: int(n) for status, n in rows}


def _pct_sqlite(session: Session, column: Any, f: Filters, qs: Sequence[float]) -> dict[str, float | None]:
    values = [float(v) for v in session.scalars(
        select(column).where(*f.clauses(), column.is_not(None)).order_by(column))]
    return _pick(values, qs)


def timing_percentiles(session: Session, f: Filters, qs: Sequence[float] = QUANTILES) -> dict[str, dict[str, Any]]:
    if not is_postgres(session):
        return {name: _pct_sqlite(session, getattr(Job, name), f, qs) for name in TIMINGS}
    cols = []
    for name in TIMINGS:
        col = getattr(Job, name)
        cols.append(func.count(col).label(f"{name}__count"))
        for q in qs:
            cols.append(func.percentile_cont(q).within_group(col.cast(Float)).label(f"{name}__p{round(q * 100)}"))
    row = session.execute(select(*cols).where(*f.clauses())).mappings().one()
    out: dict[str, dict[str, Any]] = {name: {} for name in TIMINGS}
    for key, value in row.items():
        name, stat = key.split("__")
        out[name][stat] = float(value) if value is not None else None
    return out


def grouped_percentiles(session: Session, key: Any, columns: Mapping[str, Any], where: Sequence[Any],
                        qs: Sequence[float] = (0.5,)) -> dict[Any, dict[str, dict[str, float | None]]]:
    """{group: {column name: {count, p50, ...}}} for every group of `key` (NULL-free values per column)."""
    if is_postgres(session):
        cols: list[Any] = [key.label("k")]
        for name, col in columns.items():
            cols.append(func.count(col).label(f"{name}__count"))
            for q in qs:
                cols.append(func.percentile_cont(q).within_group(col.cast(Float)).label(f"{name}__p{round(q * 100)}"))
        out: dict[Any, dict[str, dict[str, float | None]]] = {}
        for row in session.execute(select(*cols).where(*where).group_by(key)).mappings():
            group: dict[str, dict[str, float | None]] = {name: {} for name in columns}
            for label, value in row.items():
                if label == "k":
                    continue
                name, stat = label.split("__")
                group[name][stat] = float(value) if value is not None else None
            out[row["k"]] = group
        return out
    values: dict[Any, dict[str, list[float]]] = {}
    for raw in session.execute(select(key, *columns.values()).where(*where)):
        bucket = values.setdefault(raw[0], {name: [] for name in columns})
        for name, v in zip(columns, raw[1:], strict=True):
            if v is not None:
                bucket[name].append(float(v))
    return {k: {name: _pick(sorted(vs), qs) for name, vs in cols_.items()} for k, cols_ in values.items()}


def in_flight(session: Session, f: Filters) -> dict[str, int]:
    """Jobs being worked on now, by phase; running splits by Replicate's status (starting vs processing)."""
    starting = and_(Job.status == JobStatus.RUNNING.value,
                    func.coalesce(Job.prediction_status, "starting") == "starting")
    phase = case(
        (Job.status == JobStatus.SUBMITTING.value, "submitting"),
        (starting, "starting"),
        (Job.status == JobStatus.RUNNING.value, "processing"),
        else_="storing",
    )
    stmt = (select(phase, func.count())
            .where(*f.scope(), Job.status.in_(("submitting", "running", "storing"))).group_by(phase))
    out = {"submitting": 0, "starting": 0, "processing": 0, "storing": 0}
    for name, n in session.execute(stmt):
        out[str(name)] = int(n)
    out["total"] = sum(out.values())
    return out


def queue(session: Session, f: Filters, now: datetime) -> dict[str, Any]:
    depth, oldest = session.execute(
        select(func.count(), func.min(Job.created_at)).where(*f.scope(), Job.status == JobStatus.QUEUED.value)
    ).one()
    oldest_dt = as_utc(oldest)
    return {"depth": int(depth), "oldest_created_at": oldest_dt.isoformat() if oldest_dt else None,
            "oldest_age_seconds": round((now - oldest_dt).total_seconds(), 3) if oldest_dt else None}


def stuck(session: Session, f: Filters, now: datetime, stuck_after: float, limit: int = 20) -> dict[str, Any]:
    """Active jobs whose next check is more than stuck_after overdue (the sweeper should have acted)."""
    cut = now - timedelta(seconds=stuck_after)
    where = [*f.scope(), Job.status.in_(ACTIVE_STATUSES), Job.next_check_at < cut]
    n = session.scalar(select(func.count()).where(*where)) or 0
    ids = list(session.scalars(select(Job.id).where(*where).order_by(Job.next_check_at).limit(limit)))
    return {"count": int(n), "stuck_after_seconds": stuck_after, "job_ids": ids}


def failures(session: Session, f: Filters, limit: int = 50) -> list[dict[str, Any]]:
    """Failed-job error codes in the window: count and the most recent message."""
    when = func.coalesce(Job.finished_at, Job.updated_at)
    ranked = (select(Job.error_code.label("code"), Job.error_message.label("message"), when.label("at"),
                     func.row_number().over(partition_by=Job.error_code, order_by=(when.desc(), Job.id.desc()))
                     .label("rn"),
                     func.count().over(partition_by=Job.error_code).label("n"))
              .where(*f.clauses(), Job.error_code.is_not(None)).subquery())
    rows = session.execute(select(ranked.c.code, ranked.c.n, ranked.c.message, ranked.c.at)
                           .where(ranked.c.rn == 1).order_by(ranked.c.n.desc(), ranked.c.code).limit(limit))
    out = []
    for code, n, message, at in rows:
        at_dt = as_utc(at)
        out.append({"error_code": code, "count": int(n), "latest_message": message,
                    "latest_at": at_dt.isoformat() if at_dt else None})
    return out


def per_model(session: Session, f: Filters, limit: int = 50) -> list[dict[str, Any]]:
    """Counts by status and p50 predict_time for each model in the window."""
    model = func.coalesce(Job.model, Job.deployment, "-")
    cols = [func.sum(case((Job.status == s, 1), else_=0)).label(s) for s in STATUSES]
    rows = session.execute(select(model.label("model"), func.count().label("total"), *cols)
                           .where(*f.clauses()).group_by(model).order_by(func.count().desc()).limit(limit)).mappings()
    p50 = grouped_percentiles(session, model, {"predict_time": Job.predict_time}, f.clauses())
    out = []
    for row in rows:
        m = row["model"]
        out.append({"model": m, "total": int(row["total"]),
                    "by_status": {s: int(row[s] or 0) for s in STATUSES},
                    "p50_predict_time": p50.get(m, {}).get("predict_time", {}).get("p50")})
    return out


def summary(session: Session, f: Filters) -> dict[str, Any]:
    return {"status_counts": status_counts(session, f), "timings": timing_percentiles(session, f)}
