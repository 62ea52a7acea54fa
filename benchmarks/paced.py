"""Workload 5: workload 1's jobs arriving at a steady rate below capacity instead of all at once.

Workload 1 submits 2,000 jobs in one burst, so its overhead (end_to_end - total_time) is mostly the
time a job waits for a free slot (Little's law: ~n / (2 x throughput) at the median). This run shows
the per-job overhead genqueue itself adds when nothing queues: create call, detection, output copy.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import procs
from benchmarks.harness import Harness, Options, job_body
from benchmarks.simstats import gets_summary
from benchmarks.stats import pcts
from benchmarks.workloads import (
    RAISED_SIM,
    W1_PREDICT,
    W1_START,
    Others,
    _check_against_sim,
    _config,
    _cpu_delta,
    _job_figures,
    _log,
    _sampler,
    _wait_boot,
)

TICK = 0.1  # seconds between small batches


def _paced_submit(h: Harness, n: int, rate: float) -> list[float]:
    per_tick = max(1, round(rate * TICK))
    lat: list[float] = []
    with h.client() as c:
        start = time.perf_counter()
        sent = 0
        while sent < n:
            k = min(per_tick, n - sent)
            t = time.perf_counter()
            r = c.post("/v1/jobs/batch", json={"jobs": [job_body() for _ in range(k)]})
            lat.append(time.perf_counter() - t)
            if r.status_code != 202:
                raise RuntimeError(f"batch submit answered {r.status_code}: {r.text[:500]}")
            sent += k
            # Open loop: the schedule does not slow down when genqueue does.
            time.sleep(max(0.0, start + sent / rate - time.perf_counter()))
    return lat


def workload5(opts: Options) -> dict[str, Any]:
    n = opts.n(2000)
    rate = opts.pace
    with Harness(opts, "w5") as h:
        h.start_simulator(W1_PREDICT, W1_START, **RAISED_SIM)
        h.start_genqueue()
        others = Others(h)
        _wait_boot(h, opts)
        sampler = _sampler(h).start()
        cpu0, oth0 = sampler.cpu(), others.cpu()
        t0 = time.time()
        _log(f"w5: submitting {n} jobs at {rate:g} jobs/s")
        lat = _paced_submit(h, n, rate)
        done, counts = h.wait_terminal(n, timeout=600 + n * 0.5)
        cpu1, oth1 = sampler.cpu(), others.cpu()
        sampler.stop()
        rows = h.job_rows()
        problems = _check_against_sim(h, rows, with_files=True)
        cpu = _cpu_delta(cpu0, cpu1)
        total_cpu = sum(cpu.values())
        return {
            "workload": 5, "title": f"{n} jobs of {W1_PREDICT:g} s predictions arriving at {rate:g} jobs/s",
            "jobs": n, "all_terminal": done, "final_counts": counts, "pace_jobs_per_second": rate,
            **_job_figures(rows, t0),
            "submit_batch_latency": pcts(lat, 0.5, 0.99),
            "cpu_seconds": {**cpu, "total": round(total_cpu, 2)},
            "cpu_ms_per_job": round(1000 * total_cpu / n, 2),
            "other_cpu_seconds": _cpu_delta(oth0, oth1),
            "peak_rss_mb": {k: procs.mb(v.rss) for k, v in sampler.peaks.items()},
            "replicate": gets_summary(h.sim_stats()),
            "problems": len(problems), "problem_samples": problems[:10],
            "dead_processes": h.dead_children(),
            "config": _config(h, opts, predict_seconds=W1_PREDICT, start_delay=W1_START, sim=RAISED_SIM,
                              submitted_via=f"POST /v1/jobs/batch, {max(1, round(rate * TICK))} jobs every {TICK} s"),
        }
