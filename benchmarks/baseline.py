"""The baseline: the official `replicate` client in a ThreadPoolExecutor, no queue, no database.

Each of `--threads` threads has its own `replicate.Client` and httpx client; a job is
`predictions.create(version=..., input=...)`, `prediction.wait()` (REPLICATE_POLL_INTERVAL, default
0.5 s), then the output is downloaded and hashed (sha256). Run as its own process so its CPU is its own:

    .venv/bin/python -m benchmarks.baseline --sim-url http://127.0.0.1:PORT --jobs 2000 [--threads 32]

Prints one JSON object. CPU is this process's user+sys over the workload window (imports excluded).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from typing import Any

import httpx
import replicate

from benchmarks.stats import pct

VERSION_ID = "43d5bce2e1c97fa1e7d8996187a85cd5c882787989091af3b135c7a16ca23b79"
TOKEN = "r8_sim_fake_token"
FAKE_API_KEY = "sk_test_fake_not_a_real_key"

_local = threading.local()


def job_input() -> dict[str, Any]:
    return {"prompt": f"ocean {uuid.uuid4().hex}", "aspect_ratio": "16:9", "output_format": "png", "steps": 4,
            "api_key": FAKE_API_KEY}


def _clients(sim_url: str) -> tuple[replicate.Client, httpx.Client]:
    if not hasattr(_local, "rc"):
        _local.rc = replicate.Client(api_token=TOKEN, base_url=sim_url)
        _local.http = httpx.Client(timeout=60.0)
    return _local.rc, _local.http


def one_job(sim_url: str, queued_at: float) -> dict[str, Any]:
    rc, http = _clients(sim_url)
    t0 = time.time()
    pred = rc.predictions.create(version=VERSION_ID, input=job_input())
    pred.wait()
    out = pred.output
    urls = out if isinstance(out, list) else [out] if out else []
    shas = []
    for url in urls:
        resp = http.get(url)
        resp.raise_for_status()
        shas.append(hashlib.sha256(resp.content).hexdigest())
    e2e = time.time() - t0
    total = (pred.metrics or {}).get("total_time")
    return {"id": pred.id, "status": pred.status, "e2e": e2e, "e2e_queued": time.time() - queued_at,
            "total_time": total, "sha256": shas}


def run(sim_url: str, jobs: int, threads: int) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    cpu0 = os.times()
    t0 = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(one_job, sim_url, time.time()) for _ in range(jobs)]
        for f in futures:
            try:
                results.append(f.result())
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
    elapsed = time.monotonic() - t0
    cpu1 = os.times()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    overhead = [r["e2e"] - r["total_time"] for r in results if r["total_time"] is not None]
    # Comparable with genqueue's end_to_end_time, which starts when the job is accepted: includes the
    # time a job waits in the executor's queue for a free thread.
    overhead_q = [r["e2e_queued"] - r["total_time"] for r in results if r["total_time"] is not None]
    ok = sum(r["status"] == "succeeded" for r in results)
    return {
        "jobs": jobs, "threads": threads, "succeeded": ok, "errors": len(errors), "error_samples": errors[:5],
        "poll_interval": float(os.environ.get("REPLICATE_POLL_INTERVAL", "0.5")),
        "drain_seconds": round(elapsed, 2), "jobs_per_second": round(jobs / elapsed, 2),
        "cpu_seconds": round(cpu, 2), "cpu_ms_per_job": round(1000 * cpu / jobs, 2),
        "overhead_p50": round(pct(overhead, 0.5), 3) if overhead else None,
        "overhead_p95": round(pct(overhead, 0.95), 3) if overhead else None,
        "overhead_incl_queue_p50": round(pct(overhead_q, 0.5), 3) if overhead_q else None,
        "overhead_incl_queue_p95": round(pct(overhead_q, 0.95), 3) if overhead_q else None,
        "predictions": {r["id"]: r["sha256"] for r in results},
        "client_version": metadata.version("replicate"),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sim-url", required=True, help="simulator root, e.g. http://127.0.0.1:5001 (no /v1)")
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=32)
    args = ap.parse_args()
    print(json.dumps(run(args.sim_url.rstrip("/"), args.jobs, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
