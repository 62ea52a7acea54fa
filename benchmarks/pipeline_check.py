"""Issue #2's acceptance run: N jobs (default 500) of 2 s predictions against the simulator, one worker
process with concurrency 4; checks every job against the simulator and reports the overhead
`end_to_end_time - total_time` (p50/p95).

    .venv/bin/python -m benchmarks.pipeline_check [--jobs 500] [--db sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
from sqlalchemy import create_engine, text

from benchmarks.stats import pct
from genqueue.cli.stack import Stack, free_port, wait_http
from tests.support.pipeline import pipeline

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--predict-seconds", type=float, default=2.0)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    ap.add_argument("--redis-db", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gq-bench-"))
    db_name = f"gq_bench_{uuid.uuid4().hex[:8]}"
    if args.db == "postgresql":
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{db_name}"'))
        db_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + db_name
    else:
        db_url = f"sqlite:///{tmp}/genqueue.db"
    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    redis.Redis.from_url(redis_url).flushdb()
    port = free_port()
    sim_url = f"http://127.0.0.1:{port}"
    try:
        with Stack({}, tmp / "logs") as sims:
            import os

            sims.env = dict(os.environ)
            sims.add("simulator", "simulator", "--port", str(port), "--predict-seconds", str(args.predict_seconds),
                     "--start-delay", "0.2")
            assert wait_http(f"{sim_url}/_sim/stats"), "simulator did not start"
            with pipeline(tmp, db_url, redis_url, sim_url, concurrency=args.concurrency, beat=True,
                          env_extra={"GENQUEUE_LOG_LEVEL": "WARNING"}) as p:
                time.sleep(3)  # let the worker boot so queue_time measures the queue, not the boot
                t0 = time.monotonic()
                ids: list[str] = []
                for start in range(0, args.jobs, 1000):
                    ids += p.submit(min(1000, args.jobs - start))
                jobs = p.wait(ids, timeout=600 + args.jobs * args.predict_seconds / args.concurrency)
                drain = time.monotonic() - t0
                records = p.sim_records()
    finally:
        redis.Redis.from_url(redis_url).flushdb()
        if args.db == "postgresql":
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
    problems = []
    overhead: list[float] = []
    queue: list[float] = []
    after: list[float] = []  # detection lag + storage: our cost once Replicate finished
    for j in jobs:
        rec = records.get(j.prediction_id or "")
        if j.status != "succeeded" or rec is None:
            problems.append(f"{j.id}: {j.status} {j.error_code}")
            continue
        if rec["duplicates"] != 1:
            problems.append(f"{j.id}: {rec['duplicates']} creates")
        if (j.predict_time, j.total_time) != (rec["metrics"]["predict_time"], rec["metrics"]["total_time"]):
            problems.append(f"{j.id}: metrics differ")
        if [o.sha256 for o in j.outputs] != [f["sha256"] for f in rec["files"]]:
            problems.append(f"{j.id}: sha256 differs")
        assert j.end_to_end_time is not None and j.total_time is not None
        overhead.append(j.end_to_end_time - j.total_time)
        queue.append(j.queue_time or 0.0)
        after.append((j.detection_lag or 0.0) + (j.storage_time or 0.0))
    report = {
        "jobs": len(jobs), "db": args.db, "concurrency": args.concurrency, "predict_seconds": args.predict_seconds,
        "succeeded": sum(j.status == "succeeded" for j in jobs), "problems": len(problems),
        "drain_seconds": round(drain, 2), "jobs_per_second": round(len(jobs) / drain, 2),
        "overhead_p50": round(pct(overhead, 0.5), 3) if overhead else None,
        "overhead_p95": round(pct(overhead, 0.95), 3) if overhead else None,
        "overhead_mean": round(statistics.fmean(overhead), 3) if overhead else None,
        "queue_time_p50": round(pct(queue, 0.5), 3) if queue else None,
        "queue_time_p95": round(pct(queue, 0.95), 3) if queue else None,
        "detect_plus_store_p50": round(pct(after, 0.5), 3) if after else None,
        "detect_plus_store_p95": round(pct(after, 0.95), 3) if after else None,
    }
    print(json.dumps(report, indent=2))
    for line in problems[:20]:
        print("PROBLEM", line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
