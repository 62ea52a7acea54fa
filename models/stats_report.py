"""The whole ops report as one JSON-able document: what `/v1/stats`, `genqueue stats` and the dashboard show.

Time filters (`since`/`until`, or a `window` like 1h) select jobs by created_at for counts, percentiles,
failures, models and cost; by finished_at / submitted_at for the throughput and create series. Queue,
in-flight and stuck figures are the live state and ignore the window (model/key filters still apply).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from genqueue.core.pricing import Price, PriceTable
from genqueue.models import callbacks, stats, stats_series
from genqueue.models.base import utcnow
from genqueue.models.costs import cost_expr
from genqueue.models.stats import STATUSES, Filters
from genqueue.models.status import TERMINAL_NAMES
from genqueue.models.tables import ApiKey, Job

_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DEFAULT_WINDOW = "1h"
MAX_WINDOW_SECONDS = 3650 * 86400


def parse_window(text: str) -> timedelta | None:
    """'90s', '15m', '1h', '7d', '2w' -> timedelta; 'all' -> None. ValueError otherwise."""
    if text.strip().lower() == "all":
        return None
    m = _WINDOW.match(text.lower())
    if not m or float(m.group(1)) <= 0 or float(m.group(1)) * _UNITS[m.group(2)] > MAX_WINDOW_SECONDS:
        raise ValueError(f"window must look like 15m, 1h, 7d or 'all' (at most 10 years), got {text!r}")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def _billed(column: Any) -> Any:
    """predict_time when Replicate bills it: aborted predictions never ran and are not billed."""
    return case((func.coalesce(Job.prediction_status, "") == "aborted", None), else_=column)


def cost(session: Session, f: Filters, prices: PriceTable, *, by_metadata: str | None = None) -> dict[str, Any]:
    """Spend by the price table (core/pricing.py, models/costs.py): in total, by model, key, day (of
    creation, UTC) and, given a metadata key, by its value."""
    secs = func.coalesce(func.sum(_billed(Job.predict_time)), 0.0)
    usd = func.coalesce(func.sum(cost_expr(prices)), 0.0)
    where = f.clauses()

    def money(v: Any) -> float:
        return round(float(v or 0.0), 6)

    total_s, total_usd = session.execute(select(secs, usd).where(*where)).one()
    model = func.coalesce(Job.model, Job.deployment, "-")
    by_model = [{"model": m, "jobs": int(n), "billed_seconds": round(float(sec), 6), "spend": money(u),
                 "price": _price_doc(prices.price(m))}
                for m, n, sec, u in session.execute(select(model, func.count(), secs, usd).where(*where)
                                                    .group_by(model).order_by(usd.desc()).limit(50))]
    key_rows = session.execute(
        select(Job.api_key_id, ApiKey.name, func.count(), secs, usd).outerjoin(ApiKey, ApiKey.id == Job.api_key_id)
        .where(*where).group_by(Job.api_key_id, ApiKey.name).order_by(usd.desc()).limit(50))
    by_key = [{"api_key_id": k, "name": name, "jobs": int(n), "billed_seconds": round(float(sec), 6), "spend": money(u)}
              for k, name, n, sec, u in key_rows]
    day = func.date(Job.created_at)
    by_day = [{"day": str(d), "jobs": int(n), "spend": money(u)}
              for d, n, u in session.execute(select(day, func.count(), usd).where(*where).group_by(day)
                                             .order_by(day.desc()).limit(92))]
    out: dict[str, Any] = {
        "price_per_second": prices.default.per_second, "billed_seconds": round(float(total_s or 0), 6),
        "estimated_spend": money(total_usd), "by_model": by_model, "by_api_key": by_key, "by_day": by_day[::-1],
    }
    if by_metadata:
        value = Job.meta[by_metadata].as_string()
        out["by_metadata"] = {"key": by_metadata, "values": [
            {"value": v, "jobs": int(n), "spend": money(u)}
            for v, n, u in session.execute(select(value, func.count(), usd).where(*where).group_by(value)
                                           .order_by(usd.desc()).limit(50))]}
    c_n, c_s, c_u = session.execute(select(func.count(), secs, usd).where(*where, Job.status == "canceled")).one()
    a_n, a_s = session.execute(select(func.count(), func.coalesce(func.sum(Job.predict_time), 0.0))
                               .where(*where, Job.prediction_status == "aborted")).one()
    out["canceled"] = {"count": int(c_n), "billed_seconds": round(float(c_s or 0), 6), "spend": money(c_u)}
    out["aborted"] = {"count": int(a_n), "unbilled_seconds": round(float(a_s or 0), 6), "spend": 0.0}
    return out


def _price_doc(p: Price) -> dict[str, float]:
    return {"per_second": p.per_second, "per_output": p.per_output}


def retention_status(session: Session, f: Filters, now: datetime) -> dict[str, Any]:
    """What retention has done and has to do: jobs of the window whose outputs are deleted, terminal jobs
    past their expiry not deleted yet (the sweeper's backlog, all time: near 0), and the next expiry.
    The last two read only ix_jobs_expiring (rows not deleted yet)."""
    deleted = session.scalar(select(func.count()).where(*f.clauses(), Job.outputs_deleted_at.is_not(None))) or 0
    overdue = session.scalar(select(func.count()).where(
        Job.expires_at < now, Job.outputs_deleted_at.is_(None), Job.status.in_(TERMINAL_NAMES))) or 0
    nxt = session.scalar(select(func.min(Job.expires_at)).where(Job.outputs_deleted_at.is_(None)))
    nxt = stats.as_utc(nxt)
    return {"outputs_deleted": int(deleted), "overdue": int(overdue),
            "next_expiry_at": nxt.isoformat() if nxt else None}


def resolve_window(session: Session, f: Filters, now: datetime) -> tuple[datetime, datetime]:
    """The series range: the filter's own, else from the first job in scope (or an hour) up to now."""
    until = f.until or now
    if f.since is not None:
        return f.since, until
    first = stats.as_utc(session.scalar(select(func.min(Job.created_at)).where(*f.scope())))
    return (first if first and first < until else until - timedelta(hours=1)), until


def report(session: Session, f: Filters, *, create_rate_per_min: int, stuck_after: float,
           now: datetime | None = None, prices: PriceTable | None = None, price_per_second: float = 0.0,
           cost_by_metadata: str | None = None) -> dict[str, Any]:
    """`prices`: the price table (without one, `price_per_second` for every model)."""
    now = now or utcnow()
    prices = prices or PriceTable(Price(per_second=price_per_second))
    since, until = resolve_window(session, f, now)
    step = stats_series.bucket_seconds(since, until)
    counts = stats.status_counts(session, f)
    phases = stats.timing_percentiles(session, f)
    return {
        "generated_at": now.isoformat(),
        "window": {"since": f.since.isoformat() if f.since else None,
                   "until": f.until.isoformat() if f.until else None,
                   "series_since": since.isoformat(), "series_until": until.isoformat(), "bucket_seconds": step},
        "filters": {"model": f.model, "api_key_id": f.api_key_id},
        "status_counts": {s: counts.get(s, 0) for s in STATUSES},
        "total": sum(counts.values()),
        "in_flight": stats.in_flight(session, f),
        "queue": stats.queue(session, f, now),
        "stuck": stats.stuck(session, f, now, stuck_after),
        "throughput": stats_series.throughput(session, f, since, until, step),
        "creates": stats_series.creates(session, f, since, until, step, create_rate_per_min),
        "latency": {"phases": phases, "series": stats_series.latency_series(session, f, since, until, step)},
        "failures": stats.failures(session, f),
        "models": stats.per_model(session, f),
        "cost": cost(session, f, prices, by_metadata=cost_by_metadata),
        "retention": retention_status(session, f, now),
        # Callback deliveries by state and failed attempts, all time (not windowed or filtered).
        "callbacks": callbacks.counts(session),
    }


def filters_for(*, window: str | None, since: datetime | None, until: datetime | None, model: str | None,
                api_key_id: str | None, now: datetime, metadata: Mapping[str, str] | None = None) -> Filters:
    """Filters from the request/CLI options: explicit since/until win over window; default window 1h."""
    if since is None and window is None and until is None:
        window = DEFAULT_WINDOW
    if since is None and window is not None:
        span = parse_window(window)
        since = None if span is None else (until or now) - span
    return Filters(since=since, until=until, model=model or None, api_key_id=api_key_id or None,
                   metadata=metadata or None)
