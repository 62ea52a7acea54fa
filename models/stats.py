"""Read queries for ops: counts by status and percentiles of every timing, computed in SQL.

One module so the demo summary, `genqueue stats`, `/v1/stats` and the dashboard all report the same
figures for the same jobs. PostgreSQL computes percentiles with percentile_cont; SQLite (the
embedded default, small data) sorts the column in SQL and we pick the ranks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, func, select
from sqlalchemy.orm import Session

from models.tables import Job

TIMINGS = ("queue_time", "start_time", "predict_time", "total_time", "detection_lag", "storage_time",
           "end_to_end_time")
QUANTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True)
class Filters:
    since: datetime | None = None
    until: datetime | None = None
    model: str | None = None
    api_key_id: str | None = None
    job_ids: Sequence[str] | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        out: list[ColumnElement[bool]] = []
        if self.since is not None:
            out.append(Job.created_at >= self.since)
        if self.until is not None:
            out.append(Job.created_at < self.until)
        if self.model:
            out.append(Job.model == self.model)
        if self.api_key_id:
            out.append(Job.api_key_id == self.api_key_id)
        if self.job_ids is not None:
            out.append(Job.id.in_(list(self.job_ids)))
        return out


def status_counts(session: Session, f: Filters) -> dict[str, int]:
    rows = session.execute(select(Job.status, func.count()).where(*f.clauses()).group_by(Job.status)).all()
    return {status: int(n) for status, n in rows}


def _pct_sqlite(session: Session, column: Any, f: Filters, qs: Sequence[float]) -> dict[str, float | None]:
    values = [float(v) for v in session.scalars(
        select(column).where(*f.clauses(), column.is_not(None)).order_by(column))]
    out: dict[str, float | None] = {"count": float(len(values))}
    for q in qs:
        out[f"p{round(q * 100)}"] = _interpolate(values, q) if values else None
    return out


def _interpolate(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks: the same definition as percentile_cont."""
    pos = (len(values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def timing_percentiles(session: Session, f: Filters, qs: Sequence[float] = QUANTILES) -> dict[str, dict[str, Any]]:
    if session.get_bind().dialect.name != "postgresql":
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


def summary(session: Session, f: Filters) -> dict[str, Any]:
    return {"status_counts": status_counts(session, f), "timings": timing_percentiles(session, f)}
