"""A job's cost as a SQL expression (so stats, spend caps and /metrics sum it in the database), and a
key's spend in its cap window. The rule itself is `core.pricing.job_cost`; this is the same rule in SQL.

Cost is computed from the job's own columns when read, not stored: a price table corrected later
(a wrong entry) corrects the history and the caps with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Float, Table, case, func, literal, select
from sqlalchemy.orm import Session

from genqueue.core.pricing import PriceTable
from genqueue.models.tables import Job, JobAttempt, JobOutput

OUTPUTS = cast(Table, JobOutput.__table__)
ATTEMPTS = cast(Table, JobAttempt.__table__)
JOB_TABLE = cast(Table, Job.__table__)


def _by_model(table: PriceTable, attr: str, jobs: Table) -> Any:
    default = float(getattr(table.default, attr))
    special = {m: float(getattr(p, attr)) for m, p in table.models.items() if getattr(p, attr) != default}
    if not special:
        return literal(default, Float)
    return case(special, value=func.coalesce(jobs.c.model, jobs.c.deployment, ""), else_=literal(default, Float))


def cost_expr(table: PriceTable, jobs: Table = JOB_TABLE) -> Any:
    """USD of each job row: billed seconds x the model's per-second price + stored outputs x its
    per-output price (`core.pricing.job_cost`). Stored outputs are counted (job_outputs, by its primary
    key) only when some price counts them; their rows outlive retention, so a cost never changes then."""
    aborted = func.coalesce(jobs.c.prediction_status, "") == "aborted"
    seconds = case((aborted, 0.0), else_=func.coalesce(jobs.c.predict_time, 0.0))
    # Earlier attempts (a retry policy, a replay) were predictions of their own, billed too.
    earlier_aborted = func.coalesce(ATTEMPTS.c.prediction_status, "") == "aborted"
    earlier = (select(func.coalesce(func.sum(case(
        (earlier_aborted, 0.0), else_=func.coalesce(ATTEMPTS.c.metrics["predict_time"].as_float(), 0.0))), 0.0))
        .where(ATTEMPTS.c.job_id == jobs.c.id).correlate(jobs).scalar_subquery())
    expr = (seconds + earlier) * _by_model(table, "per_second", jobs)
    if table.prices_outputs:
        n = (select(func.count()).select_from(OUTPUTS).where(OUTPUTS.c.job_id == jobs.c.id)
             .correlate(jobs).scalar_subquery())
        expr = expr + n * _by_model(table, "per_output", jobs)
    return expr


def spend_by_key(session: Session, table: PriceTable, since: datetime, key_ids: Sequence[str]) -> dict[str, float]:
    """USD spent by each key on jobs that ended since `since` (ix_jobs_key_finished). A job is billed
    when it ends; one still running counts from then."""
    if not key_ids:
        return {}
    cost = func.coalesce(func.sum(cost_expr(table)), 0.0)
    rows = session.execute(select(JOB_TABLE.c.api_key_id, cost)
                           .where(JOB_TABLE.c.api_key_id.in_(list(key_ids)), JOB_TABLE.c.finished_at >= since)
                           .group_by(JOB_TABLE.c.api_key_id))
    return {k: float(v or 0.0) for k, v in rows}
