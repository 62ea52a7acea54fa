"""The SQL the scheduler reads: key weights and limits, per-key counts, queued jobs to (re)place.

The dispatcher (`genqueue.worker.dispatcher`) keeps no state that SQL could not rebuild: the lanes in
Redis are rebuilt from `queued_entries`, and per-key running counts come from here, not from a
counter that could drift when a process dies.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from genqueue.core.pricing import Period, PriceTable, SpendCap, cap_reached, spend_window
from genqueue.models.costs import spend_by_key
from genqueue.models.jobs import JOBS
from genqueue.models.status import JobStatus
from genqueue.models.tables import ApiKey

KEYS = cast(Table, ApiKey.__table__)
# Statuses that hold (or may hold) a prediction at Replicate: what `max_running` counts. A job stays
# `running` until we notice its prediction ended, so the count is never below the truth.
HOLDING = (JobStatus.SUBMITTING.value, JobStatus.RUNNING.value)


@dataclass(frozen=True, slots=True)
class KeyLimits:
    weight: int
    max_running: int | None
    max_queued: int | None
    spend_cap: SpendCap | None = None  # 0009: its queued jobs wait while its spend in the window reaches it


def key_limits(session: Session) -> dict[str, KeyLimits]:
    """Every active key's weight and limits (a small table, read every few seconds)."""
    rows = session.execute(select(KEYS.c.id, KEYS.c.weight, KEYS.c.max_running, KEYS.c.max_queued,
                                  KEYS.c.spend_limit, KEYS.c.spend_period)
                           .where(KEYS.c.revoked_at.is_(None)))
    return {r.id: KeyLimits(r.weight or 1, r.max_running, r.max_queued, spend_cap(r.spend_limit, r.spend_period))
            for r in rows}


def spend_cap(limit: float | None, period: str | None) -> SpendCap | None:
    return None if limit is None else SpendCap(float(limit), Period(period or Period.DAY.value))


def capped_keys(session: Session, limits: dict[str, KeyLimits], prices: PriceTable, now: datetime) -> set[str]:
    """Keys whose spend in their current window reached their cap (one sum per period in use)."""
    out: set[str] = set()
    for period in Period:
        keys = [k for k, v in limits.items() if v.spend_cap is not None and v.spend_cap.period is period]
        if not keys:
            continue
        spent = spend_by_key(session, prices, spend_window(period, now)[0], keys)
        out |= {k for k in keys if cap_reached(limits[k].spend_cap, spent.get(k, 0.0))}
    return out


def holding_counts(session: Session, key_ids: Sequence[str]) -> dict[str, int]:
    """Jobs of these keys that hold a prediction (ix_jobs_key_status)."""
    if not key_ids:
        return {}
    rows = session.execute(select(JOBS.c.api_key_id, func.count()).where(
        JOBS.c.api_key_id.in_(key_ids), JOBS.c.status.in_(HOLDING)).group_by(JOBS.c.api_key_id))
    return {r[0]: int(r[1]) for r in rows}


def queued_count(session: Session, key_id: str) -> int:
    return int(session.scalar(select(func.count()).where(JOBS.c.api_key_id == key_id,
                                                          JOBS.c.status == JobStatus.QUEUED.value)) or 0)


@dataclass(frozen=True, slots=True)
class QueuedJob:
    id: str
    priority: int
    api_key_id: str | None
    created_at: datetime


def queued_jobs(session: Session, ids: Iterable[str] | None = None, *, chunk: int = 5000) -> Iterator[QueuedJob]:
    """Queued jobs (all, or those of `ids` still queued), oldest first, read `chunk` rows at a time."""
    cols = (JOBS.c.id, JOBS.c.priority, JOBS.c.api_key_id, JOBS.c.created_at)
    if ids is not None:
        wanted = list(ids)
        for i in range(0, len(wanted), chunk):
            rows = session.execute(select(*cols).where(JOBS.c.id.in_(wanted[i:i + chunk]),
                                                       JOBS.c.status == JobStatus.QUEUED.value))
            yield from (QueuedJob(*r) for r in rows)
        return
    after: tuple[datetime, str] | None = None
    while True:
        stmt = select(*cols).where(JOBS.c.status == JobStatus.QUEUED.value)
        if after is not None:
            at, last = after
            stmt = stmt.where((JOBS.c.created_at > at) | ((JOBS.c.created_at == at) & (JOBS.c.id > last)))
        page = session.execute(stmt.order_by(JOBS.c.created_at, JOBS.c.id).limit(chunk)).all()
        yield from (QueuedJob(*r) for r in page)
        if len(page) < chunk:
            return
        after = (page[-1].created_at, page[-1].id)


def queued_depths(session: Session, api_key_id: str | None = None) -> list[tuple[int, str | None, int]]:
    """(priority, api key id, queued jobs) for every priority and key with queued work."""
    stmt = (select(JOBS.c.priority, JOBS.c.api_key_id, func.count()).where(JOBS.c.status == JobStatus.QUEUED.value)
            .group_by(JOBS.c.priority, JOBS.c.api_key_id))
    if api_key_id is not None:
        stmt = stmt.where(JOBS.c.api_key_id == api_key_id)
    return [(int(p), k, int(n)) for p, k, n in session.execute(stmt)]


def cap_report(session: Session, prices: PriceTable, now: datetime) -> list[dict[str, object]]:
    """Every active key with a spend cap: its limit, window, spend in it, whether it is held, and when
    the window resets (what ops see on the dashboard and in /v1/stats)."""
    limits = {k: v for k, v in key_limits(session).items() if v.spend_cap is not None}
    if not limits:
        return []
    names = {r.id: r.name for r in session.execute(select(KEYS.c.id, KEYS.c.name).where(KEYS.c.id.in_(list(limits))))}
    out: list[dict[str, object]] = []
    for period in Period:
        keys = [k for k, v in limits.items() if v.spend_cap is not None and v.spend_cap.period is period]
        if not keys:
            continue
        start, reset = spend_window(period, now)
        spent = spend_by_key(session, prices, start, keys)
        for k in keys:
            cap = limits[k].spend_cap
            assert cap is not None
            out.append({"api_key_id": k, "name": names.get(k), "limit": cap.limit, "period": period.value,
                        "spent": round(spent.get(k, 0.0), 6), "reached": cap_reached(cap, spent.get(k, 0.0)),
                        "resets_at": reset.isoformat()})
    return sorted(out, key=lambda r: (not r["reached"], str(r["name"])))
