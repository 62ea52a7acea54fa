"""Workload 3: how fast jobs are accepted, through the batch route and one by one."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from benchmarks import procs
from benchmarks.harness import Harness, Options, job_body
from benchmarks.stats import pcts
from benchmarks.workloads import (
    RAISED_SIM,
    W1_PREDICT,
    W1_START,
    Others,
    _config,
    _cpu_delta,
    _log,
    _sampler,
    _wait_boot,
)


def _single_posts(h: Harness, n: int, clients: int) -> tuple[list[float], list[int], float]:
    lat: list[float] = []
    codes: list[int] = []
    lock = threading.Lock()
    left = [n]

    def worker() -> None:
        with h.client() as c:
            while True:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                t = time.perf_counter()
                try:
                    code = c.post("/v1/jobs", json=job_body()).status_code
                except httpx.HTTPError:
                    code = 0
                d = time.perf_counter() - t
                with lock:
                    lat.append(d)
                    codes.append(code)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, codes, time.perf_counter() - t0


def workload3(opts: Options, clients: int = 16) -> dict[str, Any]:
    n_batch, n_single = opts.n(20000), opts.n(2000)
    with_workers = opts.submit_with_workers
    with Harness(opts, "w3") as h:
        if with_workers:
            h.start_simulator(W1_PREDICT, W1_START, **RAISED_SIM)
        h.start_genqueue(workers=with_workers, beat=with_workers)
        _wait_boot(h, opts, workers=with_workers)
        sampler = _sampler(h).start()
        # warm-up (not counted): one batch and one single per client, so pools and imports are hot
        h.submit_batches(10, batch=10)
        _single_posts(h, clients, clients)
        others = Others(h)
        cpu0, oth0 = sampler.cpu(), others.cpu()
        _log(f"w3: {n_batch} jobs via /v1/jobs/batch")
        t0 = time.perf_counter()
        blat = h.submit_batches(n_batch)
        batch_secs = time.perf_counter() - t0
        cpu1, oth1 = sampler.cpu(), others.cpu()
        _log(f"w3: {n_single} jobs via /v1/jobs from {clients} clients")
        slat, codes, single_secs = _single_posts(h, n_single, clients)
        cpu2, oth2 = sampler.cpu(), others.cpu()
        sampler.stop()
        ok = sum(c == 202 for c in codes)
        counts = h.status_counts()
        api_b = cpu1["api"] - cpu0["api"]
        api_s = cpu2["api"] - cpu1["api"]
        return {
            "workload": 3, "title": "submitting through the HTTP API",
            "workers_running": with_workers,
            "batch": {"jobs": n_batch, "requests": len(blat), "seconds": round(batch_secs, 2),
                      "jobs_per_second": round(n_batch / batch_secs, 1),
                      "request_latency": {**pcts(blat, 0.5, 0.99), "max": round(max(blat), 3)},
                      "api_cpu_ms_per_job": round(1000 * api_b / n_batch, 3),
                      "other_cpu_seconds": _cpu_delta(oth0, oth1)},
            "single": {"jobs": n_single, "clients": clients, "accepted": ok,
                       "non_202": sorted({c for c in codes if c != 202}),
                       "seconds": round(single_secs, 2), "jobs_per_second": round(ok / single_secs, 1),
                       "latency_ms": {k: (round(v * 1000, 1) if v is not None else None)
                                      for k, v in {**pcts(slat, 0.5, 0.95, 0.99), "max": max(slat)}.items()},
                       "api_cpu_ms_per_job": round(1000 * api_s / n_single, 3),
                       "other_cpu_seconds": _cpu_delta(oth1, oth2)},
            "jobs_in_db": counts,
            "peak_rss_mb": {k: procs.mb(v.rss) for k, v in sampler.peaks.items()},
            "dead_processes": h.dead_children(),
            "config": _config(h, opts),
        }


# --- workload 4: baseline ---------------------------------------------------------------------
