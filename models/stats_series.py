"""Time series for ops, bucketed in SQL: finished jobs by terminal status, creates, p50 latency per bucket.

A bucket is an integer `floor(epoch(ts) / bucket_seconds)` computed by the database (PostgreSQL:
extract(epoch); SQLite: strftime('%s')). Empty buckets are filled with zeros here so charts are continuous.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, case, cast, func, select
from sqlalchemy.orm import Session

from genqueue.models.stats import TIMINGS, Filters, grouped_percentiles, is_postgres
from genqueue.models.status import TERMINAL_NAMES
from genqueue.models.tables import Job

TERMINAL = TERMINAL_NAMES
# Bucket sizes we pick from so a window has at most MAX_BUCKETS points.
STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
MAX_BUCKETS = 120


def bucket_seconds(since: datetime, until: datetime) -> int:
    span = max((until - since).total_seconds(), 60.0)
    for step in STEPS:
        if span / step <= MAX_BUCKETS:
            return step
    # Longer than the largest step covers: widen the buckets so there are never more than MAX_BUCKETS.
    return max(STEPS[-1], math.ceil(span / MAX_BUCKETS))


def bucket_expr(session: Session, column: Any, step: int) -> Any:
    """floor(epoch seconds of `column` / step), as an integer, in SQL."""
    if is_postgres(session):
        return func.floor(func.extract("epoch", column) / step).cast(BigInteger)
    return cast(func.strftime("%s", column), Integer) // step


def bucket_range(since: datetime, until: datetime, step: int) -> list[int]:
    first = int(since.timestamp()) // step
    last = int(until.timestamp() - 1e-6) // step
    return list(range(first, last + 1))


def _iso(index: int, step: int) -> str:
    return datetime.fromtimestamp(index * step, UTC).isoformat()


def throughput(session: Session, f: Filters, since: datetime, until: datetime, step: int) -> dict[str, Any]:
    """Jobs that became terminal in each bucket, by status (window on finished_at)."""
    b = bucket_expr(session, Job.finished_at, step).label("b")
    cols = [func.sum(case((Job.status == s, 1), else_=0)).label(s) for s in TERMINAL]
    win = Filters(since=since, until=until, model=f.model, api_key_id=f.api_key_id, job_ids=f.job_ids)
    rows = session.execute(select(b, *cols).where(*win.clauses(Job.finished_at), Job.status.in_(TERMINAL))
                           .group_by(b)).mappings()
    by_bucket = {int(r["b"]): {s: int(r[s] or 0) for s in TERMINAL} for r in rows}
    series = []
    totals = dict.fromkeys(TERMINAL, 0)
    for idx in bucket_range(since, until, step):
        counts = by_bucket.get(idx, dict.fromkeys(TERMINAL, 0))
        for s in TERMINAL:
            totals[s] += counts[s]
        series.append({"t": _iso(idx, step), **counts})
    minutes = max((until - since).total_seconds() / 60.0, 1e-9)
    return {"bucket_seconds": step, "series": series, "totals": totals,
            "per_min": {s: round(n / minutes, 4) for s, n in totals.items()}}


def creates(session: Session, f: Filters, since: datetime, until: datetime, step: int,
            limit_per_min: int) -> dict[str, Any]:
    """Creates sent to Replicate (submitted_at) per bucket, the busiest minute, against the limit."""
    win = Filters(since=since, until=until, model=f.model, api_key_id=f.api_key_id, job_ids=f.job_ids)
    where = win.clauses(Job.submitted_at)
    b = bucket_expr(session, Job.submitted_at, step).label("b")
    by_bucket = {int(k): int(n) for k, n in session.execute(select(b, func.count()).where(*where).group_by(b))}
    minute = bucket_expr(session, Job.submitted_at, 60).label("m")
    per_minute = select(minute, func.count().label("n")).where(*where).group_by(minute).subquery()
    peak = int(session.scalar(select(func.max(per_minute.c.n))) or 0)
    series = [{"t": _iso(i, step), "count": by_bucket.get(i, 0), "per_min": round(by_bucket.get(i, 0) * 60 / step, 4)}
              for i in bucket_range(since, until, step)]
    total = sum(by_bucket.values())
    minutes = max((until - since).total_seconds() / 60.0, 1e-9)
    return {"bucket_seconds": step, "limit_per_min": limit_per_min, "total": total,
            "avg_per_min": round(total / minutes, 4), "peak_per_min": peak,
            "peak_utilization": round(peak / limit_per_min, 4) if limit_per_min else None, "series": series}


def latency_series(session: Session, f: Filters, since: datetime, until: datetime, step: int) -> list[dict[str, Any]]:
    """p50 of every timing for the jobs that finished in each bucket."""
    win = Filters(since=since, until=until, model=f.model, api_key_id=f.api_key_id, job_ids=f.job_ids)
    b = bucket_expr(session, Job.finished_at, step)
    groups = grouped_percentiles(session, b, {n: getattr(Job, n) for n in TIMINGS}, win.clauses(Job.finished_at))
    by_bucket = {int(k): v for k, v in groups.items() if k is not None}
    out = []
    for idx in bucket_range(since, until, step):
        g = by_bucket.get(idx, {})
        out.append({"t": _iso(idx, step), **{n: g.get(n, {}).get("p50") for n in TIMINGS}})
    return out
