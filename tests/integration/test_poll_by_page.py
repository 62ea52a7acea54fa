"""Polling by list pages: many running predictions refreshed with one GET /v1/predictions each."""

from __future__ import annotations

from pathlib import Path

import httpx

from genqueue.simulator.config import SimConfig
from genqueue.simulator.server import run_in_thread
from tests.support.pipeline import pipeline


def _reads(stats: dict) -> tuple[int, int]:  # type: ignore[type-arg]
    req = stats["requests"]
    gets = sum(n for k, by in req.items() if k.startswith("GET /v1/predictions/") for n in by.values())
    lists = sum(n for k, by in req.items() if k.rstrip("/") == "GET /v1/predictions" for n in by.values())
    return gets, lists


def test_running_predictions_are_refreshed_by_pages(tmp_path: Path, sqlite_url: str, redis_url: str) -> None:
    sim = run_in_thread(SimConfig(start_delay=0.2, predict_seconds=4.0, jitter=0.5))
    env = {"GENQUEUE_POLL_BY_PAGE": "true", "GENQUEUE_POLL_INITIAL_DELAY": "0.5", "GENQUEUE_POLL_MAX_DELAY": "1"}
    try:
        with pipeline(tmp_path, sqlite_url, redis_url, sim.base_url, concurrency=4, env_extra=env) as p:
            ids = p.submit(40)
            jobs = p.wait(ids, timeout=120)
            records = p.sim_records()
            stats = httpx.get(f"{sim.base_url}/_sim/stats", timeout=30).json()
    finally:
        sim.stop()
    for job in jobs:
        assert job.status == "succeeded", (job.error_code, job.error_message)
        rec = records[job.prediction_id]
        assert [o.sha256 for o in job.outputs] == [f["sha256"] for f in rec["files"]]
        assert (job.predict_time, job.total_time) == (rec["metrics"]["predict_time"], rec["metrics"]["total_time"])
    gets, lists = _reads(stats)
    # Polling each of 40 predictions every 0.5-1 s for ~4 s would take ~200 GETs; pages take far fewer.
    assert lists > 0
    print(f"reads per prediction: {(gets + lists) / len(ids):.2f} (GET {gets}, list {lists})")
    assert (gets + lists) / len(ids) < 1.5, stats["requests"]
