"""The page reader end to end (webhooks off): real worker processes against the simulator, where
finished predictions are detected by list pages at their expected finish, not by a GET each."""

from __future__ import annotations

import statistics
from pathlib import Path

import httpx

from benchmarks.simstats import gets_summary
from genqueue.simulator.config import SimConfig
from genqueue.simulator.server import run_in_thread
from tests.support.pipeline import pipeline


def test_list_pages_detect_predictions_within_the_read_budget(tmp_path: Path, pg_url: str, redis_url: str) -> None:
    # 200 predictions of ~5 s, created at the default 600/min (so ~50 in flight, created 10 a second),
    # reads at the real 3,000/min on both sides. No observed duration at first: the reader's sentinel
    # finds the first finish, then reads each window at its expected finish.
    sim = run_in_thread(SimConfig(start_delay=0.1, predict_seconds=5.0, jitter=0.3, read_limit_per_min=3000.0))
    try:
        with pipeline(tmp_path, pg_url, redis_url, sim.base_url, concurrency=4) as p:
            ids = p.submit(200)
            jobs = p.wait(ids, timeout=120)
            stats = httpx.get(f"{sim.base_url}/_sim/stats", timeout=30).json()
    finally:
        sim.stop()
    assert {j.status for j in jobs} == {"succeeded"}
    reads = gets_summary(stats)
    per_prediction = (reads["gets"] + reads["list_gets"]) / len(ids)
    lags = [j.detection_lag for j in jobs]
    assert all(lag is not None for lag in lags)
    p50 = statistics.median(lag for lag in lags if lag is not None)
    print(f"reads per prediction {per_prediction:.3f} ({reads}), detection lag p50 {p50:.3f} s")
    assert reads["list_gets"] > 0  # the pages did the detecting
    assert per_prediction < 0.5
    assert p50 < 1.0
    assert reads["throttled_429"] == 0
