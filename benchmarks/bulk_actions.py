"""Issue 15's bulk figures: a bulk retry of N failed jobs (time to queue them all again: the goal is
at least 1,000 jobs/s), then a bulk cancel of M queued and running jobs against the simulator with a
real worker (time to cancel; afterwards no prediction may still be running at the simulator).

    .venv/bin/python -m benchmarks.bulk_actions --retry 1000 --cancel 5000

PostgreSQL (a database of its own, dropped after) and a redis-server of its own (nobody else's data
is flushed). The retry part runs with no worker, so the jobs it queues stay queued and are counted
in their lanes; the cancel part starts one worker and the simulator with long predictions.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import redis
from sqlalchemy import create_engine, func, select, text, update

from genqueue.bootstrap import Root
from genqueue.intake import JobRequest, bulk
from genqueue.models.tables import Job
from genqueue.sched.ready import ReadyQueues
from genqueue.simulator.config import SimConfig
from genqueue.simulator.server import run_in_thread
from tests.support.aof_redis import AofRedis
from tests.support.pipeline import FAKE_API_KEY, VERSION, pipeline, settings_from

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _requests(n: int, tag: str) -> list[JobRequest]:
    return [JobRequest(version=VERSION, input={"prompt": f"bulk {tag} {i}", "steps": 4, "api_key": FAKE_API_KEY})
            for i in range(n)]


def _retry(db_url: str, redis_url: str, tmp: Path, n: int) -> dict[str, object]:
    env = {"DATABASE_URL": db_url, "REDIS_URL": redis_url, "GENQUEUE_DATA_DIR": str(tmp / "data"),
           "STORAGE_URL": f"file://{tmp}/out"}
    root = Root(settings_from(env))
    root.migrate()
    try:
        ids: list[str] = []
        for start in range(0, n, 1000):
            ids += [j.id for j in root.intake.submit(_requests(min(1000, n - start), f"r{start}"), batch=True)[0]]
        with root.sessions.begin() as s:
            s.execute(update(Job).where(Job.id.in_(ids)).values(status="failed", error_code="prediction_failed",
                                                                prediction_id="pred_old", prediction_status="failed"))
        root.redis.flushdb()  # the lanes: empty, as they are for failed jobs
        sinks = bulk.sinks(root.redis, root.intake.enqueue, root.enqueuer.cancel)
        t0 = time.perf_counter()
        done = bulk.run(root.sessions, sinks, "retry", bulk.JobFilter(api_key_id=None, all_keys=True, status="failed"))
        elapsed = time.perf_counter() - t0
        in_lanes = sum(len(lane.heads) for lane in ReadyQueues(root.redis).lanes(n + 10))
        return {"jobs": n, "queued_again": done.done, "in_lanes": in_lanes, "seconds": round(elapsed, 3),
                "jobs_per_second": round(done.done / elapsed, 1)}
    finally:
        root.close()


def _cancel(db_url: str, redis_url: str, tmp: Path, m: int, running_wait: float) -> dict[str, object]:
    sim = run_in_thread(SimConfig(predict_seconds=600.0, start_delay=0.2, min_cancel_after=1.0))
    try:
        with pipeline(tmp, db_url, redis_url, sim.base_url, concurrency=4, beat=True,
                      env_extra={"GENQUEUE_LOG_LEVEL": "WARNING"}) as p:
            ids: list[str] = []
            for start in range(0, m, 1000):
                ids += p.submit(min(1000, m - start))
            time.sleep(running_wait)  # some get created and run; most wait in their lanes (600 creates/min)
            with p.sessions() as s:
                before = dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())
            sinks = bulk.sinks(redis.Redis.from_url(redis_url), p.intake.enqueue, p.enqueuer.cancel)
            t0 = time.perf_counter()
            done = bulk.run(p.sessions, sinks, "cancel", bulk.JobFilter(api_key_id=None, all_keys=True))
            marked = time.perf_counter() - t0
            p.wait(ids, timeout=300)
            drained = time.perf_counter() - t0
            records = httpx.get(f"{sim.base_url}/_sim/predictions", timeout=60).json()["predictions"]
            with p.sessions() as s:
                after = dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    finally:
        sim.stop()
    still = [r["id"] for r in records if r["status"] in ("starting", "processing")]
    return {"jobs": m, "before": before, "after": after, "bulk_seconds": round(marked, 3),
            "jobs_per_second": round(done.done / marked, 1), "all_terminal_seconds": round(drained, 2),
            "predictions": len(records), "still_running_at_simulator": len(still)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--retry", type=int, default=1000, help="failed jobs to bulk-retry (0: skip)")
    ap.add_argument("--cancel", type=int, default=5000, help="jobs to bulk-cancel (0: skip)")
    ap.add_argument("--running-wait", type=float, default=20.0, help="seconds of dispatching before the cancel")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gq-bulk-"))
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    aof = AofRedis(tmp / "redis")
    aof.start()
    report: dict[str, object] = {}
    names: list[str] = []
    try:
        for part, n in (("retry", args.retry), ("cancel", args.cancel)):
            if n <= 0:
                continue
            name = f"gq_bulk_{uuid.uuid4().hex[:8]}"
            names.append(name)
            with admin.connect() as c:
                c.execute(text(f'CREATE DATABASE "{name}"'))
            db_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
            if part == "retry":
                report["retry"] = _retry(db_url, f"{aof.url}/0", tmp / part, n)
            else:
                report["cancel"] = _cancel(db_url, f"{aof.url}/1", tmp / part, n, args.running_wait)
    finally:
        aof.stop()
        with admin.connect() as c:
            for name in names:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    print(json.dumps(report, indent=2, default=str))
    ok = all(r.get("still_running_at_simulator", 0) == 0 for r in report.values() if isinstance(r, dict))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
