"""genqueue's performance benchmark: starts the real stack per workload and measures it.

    .venv/bin/python -m benchmarks.run --workload 1|2|3|4|5|9|all [--scale 0.1] [--db postgresql|sqlite]
        [--workers 1] [--concurrency 4] [--pool prefork|threads] [--api-workers 1] [--webhooks]
        [--pace 40] [--env GENQUEUE_READ_RATE_PER_MIN=6000 ...] [--write] [--keep-logs]

Workloads: 1 = 2,000 jobs of 1 s predictions, rate limits raised; 2 = 10,000 predictions of 60 s in
flight; 3 = submitting 20,000 jobs via /v1/jobs/batch and 2,000 via /v1/jobs from 16 clients;
4 = the baseline (official replicate client, ThreadPoolExecutor(32)) on workload 1; 5 = workload 1's
jobs arriving at `--pace` jobs/s (overhead without queueing); 9 = 30 jobs against a low-credit account
(6 creates/min, burst 1: ~5 min; all must succeed with at most 2 create 429s). `--scale`
multiplies the job counts. Prints one JSON report per workload; `--write` merges them into
benchmarks/results.json and rewrites BENCHMARKS.md from everything stored there.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.budget import workload9
from benchmarks.harness import Options, PrivateRedis
from benchmarks.paced import workload5
from benchmarks.submitting import workload3
from benchmarks.workloads import workload1, workload2, workload4

WORKLOADS = {"1": workload1, "2": workload2, "3": workload3, "4": workload4, "5": workload5, "9": workload9}

ORDER = ("1", "4", "5", "2", "3", "9")


def parse_env(items: list[str]) -> dict[str, str]:
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--env expects KEY=VALUE, got {item!r}")
        env[key.strip()] = value
    return env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="all", help="1, 2, 3, 4, all, or a comma list like 1,4")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply job counts (0.1 for a quick run)")
    ap.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    ap.add_argument("--workers", type=int, default=1, help="genqueue worker processes (each with --concurrency)")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--pool", choices=["prefork", "threads", "solo"], default="prefork")
    ap.add_argument("--api-workers", type=int, default=1, help="uvicorn worker processes of `genqueue api`")
    ap.add_argument("--baseline-threads", type=int, default=32)
    ap.add_argument("--redis-db", type=int, default=None,
                    help="use this DB index of the shared Redis at 127.0.0.1:6379 (flushed; refused if another "
                         "client is on it) instead of a private redis-server (the default)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="genqueue setting for its processes (repeatable), e.g. GENQUEUE_READ_RATE_PER_MIN=6000")
    ap.add_argument("--submit-with-workers", action="store_true",
                    help="workload 3: run worker and beat while submitting (default: API only)")
    ap.add_argument("--pace", type=float, default=40.0,
                    help="workload 5: jobs per second arriving (open loop, below capacity)")
    ap.add_argument("--follow-workers", type=int, default=0,
                    help="extra `genqueue worker --queues follow --pool threads --concurrency 16` processes")
    ap.add_argument("--webhooks", action="store_true",
                    help="the simulator pushes finished predictions to genqueue's API (GENQUEUE_WEBHOOK_URL)")
    ap.add_argument("--write", action="store_true", help="store results and rewrite BENCHMARKS.md")
    ap.add_argument("--keep-logs", action="store_true", help="keep each workload's temp dir and process logs")
    args = ap.parse_args()

    wanted = ORDER if args.workload == "all" else tuple(w.strip() for w in args.workload.split(","))
    for w in wanted:
        if w not in WORKLOADS:
            raise SystemExit(f"unknown workload {w!r}")
    opts = Options(scale=args.scale, db=args.db, workers=args.workers, concurrency=args.concurrency,
                   pool=args.pool, api_workers=args.api_workers, env=parse_env(args.env),
                   keep_logs=args.keep_logs, submit_with_workers=args.submit_with_workers,
                   baseline_threads=args.baseline_threads, webhooks=args.webhooks,
                   pace=args.pace, follow_workers=args.follow_workers)
    private = None
    if args.redis_db is None:
        redis_dir = Path(tempfile.mkdtemp(prefix="gq-bench-redis-"))
        private = PrivateRedis(redis_dir)
        opts.redis_base = private.url
    else:
        opts.redis_db = args.redis_db
    command = ".venv/bin/python -m benchmarks.run " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    mach = report.machine()
    try:
        reports, failed = run_all(opts, wanted)
    finally:
        if private is not None:
            private.stop()
            shutil.rmtree(redis_dir, ignore_errors=True)
    if args.write and reports:
        store = report.load_results()
        report.save_results(store, reports, command, mach)
        report.write_markdown(store)
        print(f"wrote {report.MARKDOWN} and {report.RESULTS}", file=sys.stderr)
    if failed:
        print(f"workloads failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def run_all(opts: Options, wanted: tuple[str, ...]) -> tuple[list[dict[str, Any]], list[str]]:
    reports: list[dict[str, Any]] = []
    failed: list[str] = []
    for w in [w for w in ORDER if w in wanted]:
        t = time.monotonic()
        load0 = [round(x, 2) for x in os.getloadavg()]
        try:
            rep = WORKLOADS[w](opts)
        except Exception:
            traceback.print_exc()
            failed.append(w)
            continue
        rep["wall_seconds"] = round(time.monotonic() - t, 1)
        rep["loadavg_before_after"] = [load0, [round(x, 2) for x in os.getloadavg()]]
        print(json.dumps(rep, indent=2, default=str), flush=True)
        reports.append(rep)
        if rep.get("passed") is False:  # a workload with a pass criterion (W9) that missed it
            failed.append(w)
    return reports, failed


if __name__ == "__main__":
    sys.exit(main())
