"""The four workloads. Each builds its own Harness, runs, and returns a JSON-able report dict."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from benchmarks import procs
from benchmarks.harness import (
    RAISED_CREATE_PER_MIN,
    RAISED_READ_PER_MIN,
    TERMINAL,
    Harness,
    Options,
)
from benchmarks.simstats import as_epoch, gets_summary
from benchmarks.stats import pcts

RAISED_SIM = {"create_limit_per_min": RAISED_CREATE_PER_MIN, "read_limit_per_min": RAISED_READ_PER_MIN}
W1_PREDICT, W1_START = 1.0, 0.0
W2_PREDICT, W2_START = 60.0, 0.0
# W2: creates raised so that every prediction is in flight at once; reads at Replicate's real 3,000/min
# on both sides (simulator and genqueue), which is the budget the page reader must live within.
W2_READ_PER_MIN = 3000
W2_SIM = {"create_limit_per_min": RAISED_CREATE_PER_MIN, "read_limit_per_min": W2_READ_PER_MIN}


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _config(h: Harness, opts: Options, **extra: Any) -> dict[str, Any]:
    shown = {k: v for k, v in h.env.items() if k.startswith("GENQUEUE_") and k not in ("GENQUEUE_DATA_DIR",)}
    return {"db": opts.db, "workers": opts.workers, "concurrency": opts.concurrency, "pool": opts.pool,
            "api_workers": opts.api_workers, "follow_workers": opts.follow_workers, "scale": opts.scale,
            "genqueue_env": dict(sorted(shown.items())),
            **extra}


class Others:
    """CPU of the processes that are not genqueue's (simulator, Redis, PostgreSQL), for context only."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        try:
            self.redis_pid = [int(redis.Redis.from_url(h.redis_url).info("server")["process_id"])]
        except Exception:
            self.redis_pid = []

    def cpu(self) -> dict[str, float]:
        stats = procs.all_stats()
        sim = [c.proc.pid for c in self.h.sim_stack.children.values() if c.proc] if self.h.sim_stack else []
        return {"simulator": procs.tree_cpu_seconds(sim, stats),
                "redis": procs.tree_cpu_seconds(self.redis_pid, stats),
                "postgres_server": procs.tree_cpu_seconds(procs.roots_by_comm("postgres", stats), stats)}


def _sampler(h: Harness, interval: float = 0.5) -> procs.Sampler:
    return procs.Sampler({"api": lambda: h.roots("api"), "worker": lambda: h.roots("worker"),
                          "beat": lambda: h.roots("beat")}, interval=interval)


def _wait_boot(h: Harness, opts: Options, workers: bool = True) -> None:
    per_worker = opts.concurrency + 1 if opts.pool == "prefork" else 1
    want = 1 + (opts.workers * per_worker + 1 if workers else 0)
    if not procs.wait_idle(h.genqueue_roots, min_procs=want, timeout=60, quiet=0.1):
        _log("genqueue processes did not go idle within 60 s; measuring anyway")


def _cpu_delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: round(b[k] - a[k], 2) for k in a}


def _job_figures(rows: list[dict[str, Any]], t0: float) -> dict[str, Any]:
    ok = [r for r in rows if r["status"] == "succeeded"]
    overhead = [r["end_to_end_time"] - r["total_time"] for r in ok
                if r["end_to_end_time"] is not None and r["total_time"] is not None]
    finished = [e for e in (as_epoch(r["finished_at"]) for r in rows) if e is not None]
    drain = (max(finished) - t0) if finished else None
    col = {k: [r[k] for r in ok if r[k] is not None] for k in ("queue_time", "detection_lag", "storage_time",
                                                                "start_time", "polls")}
    return {
        "succeeded": len(ok), "failed": sum(r["status"] == "failed" for r in rows),
        "error_codes": sorted({r["error_code"] for r in rows if r["error_code"]}),
        "drain_seconds": round(drain, 2) if drain else None,
        "jobs_per_second": round(len(rows) / drain, 2) if drain else None,
        "overhead": {**pcts(overhead, 0.5, 0.95, 0.99), "max": round(max(overhead), 3) if overhead else None},
        "queue_time": pcts(col["queue_time"], 0.5, 0.95),
        "detection_lag": pcts(col["detection_lag"], 0.5, 0.95),
        "storage_time": pcts(col["storage_time"], 0.5, 0.95),
        "creates_per_job_max": max((r["attempts"] or 0 for r in rows), default=0),
    }


def _check_against_sim(h: Harness, rows: list[dict[str, Any]], with_files: bool) -> list[str]:
    records = {r["id"]: r for r in h.sim_records(files=with_files)}
    shas = h.output_shas() if with_files else {}
    problems = []
    for j in rows:
        rec = records.get(j["prediction_id"] or "")
        if j["status"] != "succeeded" or rec is None:
            problems.append(f"{j['id']}: {j['status']} {j['error_code']}")
            continue
        if rec["duplicates"] != 1:
            problems.append(f"{j['id']}: {rec['duplicates']} creates")
        if with_files and shas.get(j["prediction_id"], []) != [f["sha256"] for f in rec["files"]]:
            problems.append(f"{j['id']}: sha256 differs")
    return problems


# --- workload 1 -------------------------------------------------------------------------------
def workload1(opts: Options) -> dict[str, Any]:
    n = opts.n(2000)
    with Harness(opts, "w1") as h:
        h.start_simulator(W1_PREDICT, W1_START, **RAISED_SIM)
        h.start_genqueue()
        others = Others(h)
        _wait_boot(h, opts)
        sampler = _sampler(h).start()
        cpu0, oth0 = sampler.cpu(), others.cpu()
        t0 = time.time()
        _log(f"w1: submitting {n} jobs")
        lat = h.submit_batches(n)
        done, counts = h.wait_terminal(n, timeout=600 + n * 0.5)
        cpu1, oth1 = sampler.cpu(), others.cpu()
        sampler.stop()
        rows = h.job_rows()
        stats = h.sim_stats()
        problems = _check_against_sim(h, rows, with_files=True)
        cpu = _cpu_delta(cpu0, cpu1)
        total_cpu = sum(cpu.values())
        return {
            "workload": 1, "title": f"{n} jobs of {W1_PREDICT:g} s predictions, rate limits raised",
            "jobs": n, "all_terminal": done, "final_counts": counts,
            **_job_figures(rows, t0),
            "submit_batch_latency": pcts(lat, 0.5, 0.99),
            "cpu_seconds": {**cpu, "total": round(total_cpu, 2)},
            "cpu_ms_per_job": round(1000 * total_cpu / n, 2),
            "other_cpu_seconds": _cpu_delta(oth0, oth1),
            "peak_rss_mb": {k: procs.mb(v.rss) for k, v in sampler.peaks.items()},
            "peak_pss_mb": {k: procs.mb(v.pss) for k, v in sampler.peaks.items()},
            "replicate": gets_summary(stats),
            "problems": len(problems), "problem_samples": problems[:10],
            "dead_processes": h.dead_children(),
            "config": _config(h, opts, predict_seconds=W1_PREDICT, start_delay=W1_START, sim=RAISED_SIM,
                              submitted_via="POST /v1/jobs/batch (1000/request)"),
        }


# --- workload 2 -------------------------------------------------------------------------------
def workload2(opts: Options) -> dict[str, Any]:
    n = opts.n(10000)
    with Harness(opts, "w2") as h:
        h.start_simulator(W2_PREDICT, W2_START, **W2_SIM)
        h.start_genqueue(env_extra={"GENQUEUE_READ_RATE_PER_MIN": str(W2_READ_PER_MIN)})
        others = Others(h)
        _wait_boot(h, opts)
        sampler = _sampler(h).start()
        cpu0, oth0 = sampler.cpu(), others.cpu()
        t0 = time.time()
        _log(f"w2: submitting {n} jobs of {W2_PREDICT:g} s")
        lat = h.submit_batches(n)
        submitted_in = time.time() - t0
        peak: dict[str, float | None] = {"running": 0, "all_created_after": None}

        def tick(counts: dict[str, int]) -> None:
            peak["running"] = max(peak["running"] or 0, counts.get("running", 0))
            created = counts.get("running", 0) + counts.get("storing", 0) + sum(counts.get(s, 0) for s in TERMINAL)
            if peak["all_created_after"] is None and created >= n:
                peak["all_created_after"] = round(time.time() - t0, 2)

        done, counts = h.wait_terminal(n, timeout=900 + n * 0.2, every=1.0, on_tick=tick)
        cpu1, oth1 = sampler.cpu(), others.cpu()
        sampler.stop()
        rows = h.job_rows()
        stats = h.sim_stats()
        problems = _check_against_sim(h, rows, with_files=False)
        cpu = _cpu_delta(cpu0, cpu1)
        total_cpu = sum(cpu.values())
        figures = _job_figures(rows, t0)
        return {
            "workload": 2, "title": f"{n} predictions in flight at once, {W2_PREDICT:g} s each",
            "jobs": n, "all_terminal": done, "final_counts": counts,
            "submit_seconds": round(submitted_in, 2), "all_created_after_seconds": peak["all_created_after"],
            "peak_running": peak["running"],
            "peak_rss_mb": {k: procs.mb(v.rss) for k, v in sampler.peaks.items()},
            "peak_pss_mb": {k: procs.mb(v.pss) for k, v in sampler.peaks.items()},
            "peak_procs": {k: v.procs for k, v in sampler.peaks.items()},
            "rss_samples": sampler.samples,
            "detection_lag": figures["detection_lag"],
            **{k: figures[k] for k in ("succeeded", "failed", "error_codes", "drain_seconds", "overhead",
                                       "queue_time")},
            "submit_batch_latency": pcts(lat, 0.5, 0.99),
            "cpu_seconds": {**cpu, "total": round(total_cpu, 2)},
            "cpu_ms_per_job": round(1000 * total_cpu / n, 2),
            "other_cpu_seconds": _cpu_delta(oth0, oth1),
            "replicate": gets_summary(stats),
            "problems": len(problems), "problem_samples": problems[:10],
            "dead_processes": h.dead_children(),
            "config": _config(h, opts, predict_seconds=W2_PREDICT, start_delay=W2_START, sim=W2_SIM),
        }


# --- workload 3 -------------------------------------------------------------------------------
def workload4(opts: Options) -> dict[str, Any]:
    n = opts.n(2000)
    threads = opts.baseline_threads
    with Harness(opts, "w4", with_db=False) as h:
        h.start_simulator(W1_PREDICT, W1_START, **RAISED_SIM)
        _log(f"w4: baseline, {n} jobs on ThreadPoolExecutor({threads})")
        proc = subprocess.run([sys.executable, "-m", "benchmarks.baseline", "--sim-url", h.sim_url, "--jobs", str(n),
                               "--threads", str(threads)], capture_output=True, text=True,
                              timeout=600 + n * 2, cwd=Path(__file__).resolve().parents[1])
        if proc.returncode != 0:
            raise RuntimeError(f"baseline failed: {proc.stderr[-3000:]}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        stats = h.sim_stats()
        records = {r["id"]: r for r in h.sim_records(files=True)}
        preds = res.pop("predictions")
        overhead = {"p50": res.pop("overhead_p50"), "p95": res.pop("overhead_p95")}
        overhead_q = {"p50": res.pop("overhead_incl_queue_p50", None), "p95": res.pop("overhead_incl_queue_p95", None)}
        problems = [pid for pid, shas in preds.items()
                    if pid not in records or [f["sha256"] for f in records[pid]["files"]] != shas]
        return {
            "workload": 4, "title": f"baseline: official replicate client, ThreadPoolExecutor({threads}), "
                                    f"{n} jobs of {W1_PREDICT:g} s",
            **res, "overhead": overhead_q, "overhead_excl_queue": overhead,
            "replicate": gets_summary(stats), "problems": len(problems) + res["errors"],
            "config": {"scale": opts.scale, "threads": threads, "predict_seconds": W1_PREDICT,
                       "start_delay": W1_START, "sim": RAISED_SIM},
        }


