"""The scheduling workloads (issue: the Replicate budget, scheduled), at the real limits.

    .venv/bin/python -m benchmarks.scheduling --workload 6|7|8|10|all [--scale 0.1] [--write]

6 = 3,000 jobs of 1 s submitted at once, the fake at 600 creates/min and 3,000 reads/min, genqueue
    with no rate setting (the README's defaults); the baseline (official client, ThreadPoolExecutor(32))
    on the same fake. 7 = 20 priority-9 jobs behind 3,000 priority-5. 8 = key A's 3,000, then key B's 20.
10 = a key with --max-running 5 and 200 jobs of 5 s, the fake sampled every 100 ms.

Every time is the simulator's (`created_at` of its predictions, its 429 counter); submit runs per job
come from the workers' step counters (worker.metrics), worker CPU from /proc.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import text

from benchmarks import procs
from benchmarks.harness import Harness, Options, PrivateRedis, job_body
from benchmarks.simstats import as_epoch, gets_summary

RESULTS = Path(__file__).with_name("scheduling_results.json")


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _created(h: Harness) -> dict[str, float]:
    """prediction id -> when the simulator created it."""
    return {r["id"]: float(as_epoch(r["created_at"]) or 0) for r in h.sim_records(files=False)}


def _jobs(h: Harness) -> list[dict[str, Any]]:
    assert h.engine is not None
    sql = text("SELECT id, status, prediction_id, priority, api_key_id, attempts FROM jobs")
    with h.engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(sql)]


def _submit(h: Harness, n: int, *, key: str | None = None, priority: int = 5, batch: int = 1000) -> None:
    headers = {"Authorization": f"Bearer {key or h.api_key}"}
    with httpx.Client(base_url=h.api_url, headers=headers, timeout=120) as c:
        for start in range(0, n, batch):
            k = min(batch, n - start)
            r = c.post("/v1/jobs/batch", json={"jobs": [{**job_body(), "priority": priority} for _ in range(k)]})
            if r.status_code != 202:
                raise RuntimeError(f"batch submit answered {r.status_code}: {r.text[:300]}")


def _step_runs(h: Harness) -> dict[str, int]:
    raw = redis.Redis.from_url(h.redis_url).hgetall("gq:metrics:step_runs")
    return {k.decode(): int(float(v)) for k, v in raw.items()}


def _wait_created(h: Harness, pred: Any, want: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(1 for j in _jobs(h) if j["prediction_id"] and pred(j)) >= want:
            return True
        time.sleep(0.5)
    return False


def workload6(opts: Options) -> dict[str, Any]:
    n = opts.n(3000)
    with Harness(opts, "w6") as h:
        h.start_simulator(1.0, 0.0)  # the fake's default limits: 600 creates/min, 3,000 reads/min
        h.start_genqueue(default_limits=True)
        time.sleep(3)
        sampler = procs.Sampler({"worker": lambda: h.roots("worker")}, interval=0.5).start()
        cpu0 = sampler.cpu()
        t0 = time.time()
        _log(f"w6: {n} jobs at the real limits")
        _submit(h, n)
        done, counts = h.wait_terminal(n, timeout=120 + n * 0.25)
        cpu1 = sampler.cpu()
        sampler.stop()
        stats = h.sim_stats()
        created = sorted(_created(h).values())
        steady = [t for t in created if t >= t0 + 10]
        rate = (len(steady) - 1) / (steady[-1] - steady[0]) * 60 if len(steady) > 1 else 0.0
        runs = _step_runs(h)
        worker_cpu = cpu1["worker"] - cpu0["worker"]
        jobs = _jobs(h)
        _log("w6: baseline on the same fake")
        sim2 = h.sim_url
        httpx.post(f"{sim2}/_sim/reset", timeout=30)
        base = subprocess.run([sys.executable, "-m", "benchmarks.baseline", "--sim-url", sim2, "--jobs", str(n),
                               "--threads", "32"], capture_output=True, text=True, timeout=1800,
                              cwd=Path(__file__).resolve().parents[1])
        baseline = json.loads(base.stdout.strip().splitlines()[-1]) if base.returncode == 0 else {
            "error": base.stderr[-500:]}
        baseline.pop("predictions", None)
        return {
            "workload": 6, "title": f"{n} jobs of 1 s at the real limits (600 creates/min), README defaults",
            "all_terminal": done, "final_counts": counts,
            "creates_per_min_after_10s": round(rate, 1), "share_of_budget": round(rate / 600, 3),
            "drain_seconds": round(created[-1] - t0, 1) if created else None,
            "throttled_429": stats.get("throttled_429", 0),
            "submit_runs_per_job": round(runs.get("submit", 0) / n, 3), "step_runs": runs,
            "worker_cpu_ms_per_job": round(1000 * worker_cpu / n, 2),
            "creates_per_job_max": max((j["attempts"] or 0 for j in jobs), default=0),
            "replicate": gets_summary(stats),
            "baseline": {k: baseline.get(k) for k in ("jobs", "succeeded", "errors", "error_samples",
                                                      "jobs_per_second", "wall_seconds", "error")},
        }


def _urgent_after_backlog(opts: Options, name: str, *, by_key: bool) -> dict[str, Any]:
    n, m = opts.n(3000), 20
    with Harness(opts, name) as h:
        h.start_simulator(1.0, 0.0)
        h.start_genqueue(default_limits=True)
        time.sleep(3)
        other = h.cli("keys", "create", "--name", "b", "--role", "submit").strip().splitlines()[-1] if by_key else None
        a = h.cli("keys", "create", "--name", "a", "--role", "submit").strip().splitlines()[-1]
        _submit(h, n, key=a)
        time.sleep(5)  # the backlog is being worked through at the budget
        t_urgent = time.time()
        _submit(h, m, key=other or a, priority=5 if by_key else 9)
        mine = (lambda j: j["api_key_id"] != _key_id(h, a)) if by_key else (lambda j: j["priority"] == 9)
        ok = _wait_created(h, mine, m, timeout=120)
        created = _created(h)
        times = sorted(created[j["prediction_id"]] - t_urgent for j in _jobs(h) if j["prediction_id"] and mine(j))
        backlog_left = sum(1 for j in _jobs(h) if j["status"] == "queued")
        return {
            "workload": 7 if not by_key else 8,
            "title": f"{m} jobs of key B after key A's {n}" if by_key else f"{m} priority-9 jobs behind {n} priority-5",
            "all_created": ok, "created_within_s": {"first": round(times[0], 2) if times else None,
                                                    "last": round(times[-1], 2) if times else None},
            "backlog_still_queued": backlog_left, "throttled_429": h.sim_stats().get("throttled_429", 0),
        }


def _key_id(h: Harness, plaintext: str) -> str:
    import hashlib

    assert h.engine is not None
    with h.engine.connect() as c:
        return str(c.execute(text("SELECT id FROM api_keys WHERE key_hash = :h"),
                             {"h": hashlib.sha256(plaintext.encode()).hexdigest()}).scalar_one())


def workload7(opts: Options) -> dict[str, Any]:
    return _urgent_after_backlog(opts, "w7", by_key=False)


def workload8(opts: Options) -> dict[str, Any]:
    return _urgent_after_backlog(opts, "w8", by_key=True)


def workload10(opts: Options) -> dict[str, Any]:
    n, limit = opts.n(200), 5
    with Harness(opts, "w10") as h:
        h.start_simulator(5.0, 0.0)
        h.start_genqueue(default_limits=True)
        time.sleep(3)
        key = h.cli("keys", "create", "--name", "limited", "--role", "submit", "--max-running",
                    str(limit)).strip().splitlines()[-1]
        samples: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            with httpx.Client(timeout=30) as c:
                while not stop.is_set():
                    recs = c.get(f"{h.sim_url}/_sim/predictions").json()["predictions"]
                    samples.append(sum(1 for r in recs if r["status"] in ("starting", "processing")))
                    time.sleep(0.1)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        t0 = time.time()
        _submit(h, n, key=key)
        done, counts = h.wait_terminal(n, timeout=60 + n * 5 / limit * 2)
        stop.set()
        thread.join(30)
        return {"workload": 10, "title": f"--max-running {limit}, {n} jobs of 5 s", "all_terminal": done,
                "final_counts": counts, "max_running_seen": max(samples, default=0), "samples": len(samples),
                "drain_seconds": round(time.time() - t0, 1),
                "ideal_drain_seconds": round(n * 5 / limit, 1)}


WORKLOADS = {"6": workload6, "7": workload7, "8": workload8, "10": workload10}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="all")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--write", action="store_true", help=f"merge the reports into {RESULTS.name}")
    args = ap.parse_args()
    wanted = list(WORKLOADS) if args.workload == "all" else args.workload.split(",")
    # A redis-server of the run's own, as benchmarks/run.py does: the shared one's DB indexes belong to tests.
    private = PrivateRedis(Path(tempfile.mkdtemp(prefix="genqueue-bench-redis-")))
    opts = Options(scale=args.scale, redis_base=private.url)
    stored = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    try:
        for w in wanted:
            result = WORKLOADS[w](opts)
            result["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            result["scale"] = args.scale
            print(json.dumps(result), flush=True)
            stored[f"W{w}"] = result
    finally:
        private.stop()
    if args.write:
        RESULTS.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
