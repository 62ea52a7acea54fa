"""Seed 1,000,000 jobs in a fresh PostgreSQL database and time the /v1/stats computation.

    .venv/bin/python -m benchmarks.stats_1m [--jobs 1000000] [--days 30] [--runs 20]
        [--admin-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres] [--keep]

Rows are generated server-side (INSERT ... SELECT generate_series), spread evenly over --days, with a
realistic mix: ~90% succeeded, 6% failed (several error codes, some aborted), 2% canceled, and a
small active tail in the last minutes. Then `models.stats_report.report` (what /v1/stats returns) is
timed for the default window (1h) and for 24h, and once for all time. Prints p50/p95 in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from sqlalchemy import create_engine, text

from genqueue.models.base import utcnow
from genqueue.models.db import make_engine, make_session_factory
from genqueue.models.migrate import upgrade
from genqueue.models.stats_report import filters_for, report

SEED = """
INSERT INTO jobs (id, status, target, model, input_public, secret_names, api_key_id, prediction_id,
  prediction_status, created_at, submit_started_at, submitted_at, prediction_created_at, prediction_started_at,
  completed_at, detected_at, finished_at, updated_at, next_check_at, polls, attempts, deliveries,
  predict_time, total_time, queue_time, start_time, detection_lag, storage_time, end_to_end_time,
  error_code, error_message)
SELECT
  lpad(to_hex(g), 32, '0'),
  st, 'model', 'acme/model-' || (g % 7), '{"prompt": "x"}'::json, '[]'::json,
  CASE WHEN g % 3 = 0 THEN 'key_b' ELSE 'key_a' END,
  'p' || g,
  CASE st WHEN 'succeeded' THEN 'succeeded' WHEN 'canceled' THEN 'canceled' WHEN 'running' THEN 'processing'
          WHEN 'failed' THEN (CASE WHEN g % 5 = 0 THEN 'aborted' ELSE 'failed' END) ELSE NULL END,
  c, c + q * interval '1 second', c + (q + 0.3) * interval '1 second', c + (q + 0.3) * interval '1 second',
  c + (q + 0.3 + s) * interval '1 second', c + (q + 0.3 + s + p) * interval '1 second',
  c + (q + 0.3 + s + p + 0.4) * interval '1 second',
  CASE WHEN st IN ('succeeded', 'failed', 'canceled') THEN c + (q + 0.3 + s + p + 0.9) * interval '1 second' END,
  c, CASE WHEN st IN ('queued', 'submitting', 'running', 'storing') THEN now() + interval '30 seconds' END, 3, 1, 1,
  CASE WHEN st IN ('succeeded', 'failed', 'canceled') THEN p END, s + p, q, s, 0.4, 0.5, q + 0.3 + s + p + 0.9,
  CASE WHEN st = 'failed' THEN (ARRAY['prediction_failed', 'prediction_aborted', 'deadline_exceeded',
                                      'output_expired'])[1 + g % 4] END,
  CASE WHEN st = 'failed' THEN 'synthetic failure ' || (g % 13) END
FROM (
  SELECT g,
    now() - (:days * 86400.0 * (:n - g) / :n) * interval '1 second' AS c,
    CASE WHEN g > :n - 50 THEN (ARRAY['queued', 'submitting', 'running', 'storing'])[1 + g % 4]
         WHEN g % 50 = 0 THEN 'canceled' WHEN g % 50 < 4 THEN 'failed' ELSE 'succeeded' END AS st,
    0.05 + (g % 97) / 100.0 AS q, 0.2 + (g % 13) / 10.0 AS s, 1.0 + (g % 89) / 10.0 AS p
  FROM generate_series(1, :n) AS g
) AS x
"""


def timed(sessions, window: str, runs: int, settings: dict) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(runs):
        now = utcnow()
        f = filters_for(window=window, since=None, until=None, model=None, api_key_id=None, now=now)
        t0 = time.perf_counter()
        with sessions() as s:
            report(s, f, now=now, **settings)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    pos = (len(v) - 1) * q
    lo = int(pos)
    return v[lo] + (v[min(lo + 1, len(v) - 1)] - v[lo]) * (pos - lo)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--keep", action="store_true", help="do not drop the database afterwards")
    a = ap.parse_args()
    name = f"gq_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(a.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = a.admin_url.rsplit("/", 1)[0] + "/" + name
    engine = make_engine(url)
    try:
        upgrade(engine)
        t0 = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO api_keys (id, name, role, key_hash, prefix, created_at) VALUES "
                              "('key_a', 'a', 'submit', 'ha', 'gq_a', now()), "
                              "('key_b', 'b', 'submit', 'hb', 'gq_b', now())"))
            conn.execute(text(SEED), {"n": a.jobs, "days": a.days})
        seeded = time.perf_counter() - t0
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE jobs"))
        print(f"seeded {a.jobs:,} jobs over {a.days:g} days in {seeded:.1f} s (+ VACUUM ANALYZE)")
        sessions = make_session_factory(engine)
        settings = {"price_per_second": 0.0014, "create_rate_per_min": 600, "stuck_after": 120.0}
        timed(sessions, "1h", 2, settings)  # warm the cache
        for window, runs in (("1h", a.runs), ("24h", a.runs), ("all", 3)):
            ms = timed(sessions, window, runs, settings)
            print(f"window={window:>4}  runs={runs:>2}  p50={pct(ms, 0.5):8.1f} ms  p95={pct(ms, 0.95):8.1f} ms"
                  f"  max={max(ms):8.1f} ms  mean={statistics.mean(ms):8.1f} ms")
    finally:
        engine.dispose()
        if not a.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
