"""Workload 9: a low-credit account. The simulator allows 6 creates a minute with a burst of 1 (its
`low_credit` preset); genqueue runs with no rate settings at all (no caps), so everything it knows
about the account it learns from the answers' ratelimit headers. Passes when every job succeeds and
the simulator answered at most 2 create 429s."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import Any

import redis

from benchmarks.harness import Harness, Options
from benchmarks.simstats import gets_summary
from genqueue.worker.ratelimit import RateLimiter

W9_JOBS = 30
W9_PREDICT, W9_START = 1.0, 0.2
MAX_429 = 2


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def workload9(opts: Options) -> dict[str, Any]:
    n = opts.n(W9_JOBS)
    with Harness(opts, "w9") as h:
        h.start_simulator(W9_PREDICT, W9_START, preset="low_credit")
        # No caps: the fleet starts at the documented 600/min and learns the account.
        h.start_genqueue(default_limits=True)
        time.sleep(3)  # workers up
        t0 = time.time()
        _log(f"w9: submitting {n} jobs to a 6 creates/min account (~{n / 6:.0f} min)")
        h.submit_batches(n)
        done, counts = h.wait_terminal(n, timeout=120 + n * 20)
        wall = time.time() - t0
        rows = h.job_rows()
        stats = h.sim_stats()
        created = sorted(datetime.fromisoformat(r["created_at"]).timestamp() for r in h.sim_records(files=False))
        learned = RateLimiter(redis.Redis.from_url(h.redis_url)).account("create")
    span = created[-1] - created[0] if len(created) > 1 else None
    throttled = stats.get("throttled_429_by_kind", {})
    ok = sum(r["status"] == "succeeded" for r in rows)
    return {
        "workload": 9,
        "title": f"{n} jobs against a low-credit account (simulator: 6 creates/min, burst 1; genqueue: no caps)",
        "jobs": n, "all_terminal": done, "statuses": counts, "succeeded": ok,
        "sim_429_by_kind": throttled, "sim_429_total": stats.get("throttled_429"),
        "creates_per_min_measured": round((len(created) - 1) / span * 60, 2) if span else None,
        "first_to_last_create_seconds": round(span, 1) if span else None,
        "drain_seconds": round(wall, 1),
        "learned_create_per_min": round(learned.rate * 60, 3),
        "replicate": gets_summary(stats),
        "creates_per_job_max": max((r["attempts"] or 0 for r in rows), default=0),
        "passed": ok == n and throttled.get("create", 0) <= MAX_429,
        "config": {"db": opts.db, "workers": opts.workers, "concurrency": opts.concurrency, "pool": opts.pool,
                   "scale": opts.scale, "sim": {"preset": "low_credit"}, "predict_seconds": W9_PREDICT},
    }
