"""A fleet of worker processes against Replicate's create limit: does the shared limiter keep the
fleet under it? Runs N jobs through W worker processes against a simulator that enforces
600 creates/min with a small burst, and reports the 429s the simulator served per phase.

    .venv/bin/python -m benchmarks.fleet_ratelimit [--jobs 1200] [--workers 4] [--burst 60]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

from genqueue.cli.stack import Stack, free_port, wait_http
from tests.support.pipeline import pipeline


def sim_429s(sim_url: str) -> int:
    return int(httpx.get(f"{sim_url}/_sim/stats", timeout=30).json()["throttled_rate_limit"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=1200)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--limit", type=int, default=600, help="creates per minute, simulator and genqueue")
    ap.add_argument("--burst", type=int, default=60, help="the simulator's create burst")
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--redis-db", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gq-fleet-"))
    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    redis.Redis.from_url(redis_url).flushdb()
    port = free_port()
    sim_url = f"http://127.0.0.1:{port}"
    with Stack(dict(os.environ), tmp / "logs") as sims:
        sims.add("simulator", "simulator", "--port", str(port), "--predict-seconds", "1", "--start-delay", "0.2",
                 "--set", f"create_limit_per_min={args.limit}", "--set", f"create_burst={args.burst}",
                 "--set", "read_limit_per_min=100000")
        assert wait_http(f"{sim_url}/_sim/stats"), "simulator did not start"
        env = {"GENQUEUE_CREATE_RATE_PER_MIN": str(args.limit), "GENQUEUE_READ_RATE_PER_MIN": "100000",
               "GENQUEUE_LOG_LEVEL": "WARNING"}
        with pipeline(tmp, f"sqlite:///{tmp}/db.sqlite", redis_url, sim_url, concurrency=args.concurrency,
                      env_extra=env) as p:
            for i in range(1, args.workers):
                p.stack.add(f"worker-{i}", "worker", "--concurrency", str(args.concurrency))
            time.sleep(3)
            t0 = time.monotonic()
            ids = p.submit(min(1000, args.jobs))
            if args.jobs > 1000:
                ids += p.submit(args.jobs - 1000)
            time.sleep(args.warmup)
            warm = sim_429s(sim_url)
            jobs = p.wait(ids, timeout=120 + args.jobs / args.limit * 60 * 2)
            drain = time.monotonic() - t0
            total = sim_429s(sim_url)
    redis.Redis.from_url(redis_url).flushdb()
    report = {
        "jobs": len(jobs), "worker_processes": args.workers, "concurrency": args.concurrency,
        "limit_per_min": args.limit, "sim_burst": args.burst,
        "succeeded": sum(j.status == "succeeded" for j in jobs),
        "drain_seconds": round(drain, 1), "creates_per_min": round(len(jobs) / drain * 60, 1),
        "sim_429_during_warmup": warm, "sim_429_after_warmup": total - warm,
    }
    print(json.dumps(report, indent=2))
    return 0 if report["succeeded"] == len(jobs) and total == warm else 1


if __name__ == "__main__":
    sys.exit(main())
