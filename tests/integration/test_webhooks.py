"""Webhooks end to end: the simulator pushes finished predictions to a real `genqueue api` process,
workers apply them, and no prediction is polled; when pushes fail, the safety-net poll finishes jobs."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import update

from genqueue.models.base import utcnow
from genqueue.models.tables import Job
from genqueue.simulator.config import SimConfig
from genqueue.simulator.server import run_in_thread
from tests.support.pipeline import pipeline
from tests.support.seaweed import free_ports

# Pushes are the only way these jobs can finish quickly: the safety-net poll is 90 s away.


def _gets(stats: dict) -> int:  # type: ignore[type-arg]
    return sum(n for k, by in stats["requests"].items() if k.startswith("GET /v1/predictions/")
               for n in by.values())


def test_pushed_predictions_finish_jobs_without_polling(tmp_path: Path, sqlite_url: str, redis_url: str) -> None:
    (port,) = free_ports(1)
    sim = run_in_thread(SimConfig(start_delay=0.1, predict_seconds=1.5, jitter=0.5, webhook_duplicate_rate=0.3))
    # No GENQUEUE_WEBHOOK_SECRET: the API fetches the signing secret from Replicate (the simulator).
    env = {"GENQUEUE_WEBHOOK_URL": f"http://127.0.0.1:{port}"}
    try:
        with pipeline(tmp_path, sqlite_url, redis_url, sim.base_url, concurrency=4, env_extra=env,
                      api_port=port) as p:
            ids = p.submit(20)
            jobs = p.wait(ids, timeout=60)
            records = p.sim_records()
            stats = httpx.get(f"{sim.base_url}/_sim/stats", timeout=30).json()
    finally:
        sim.stop()
    for job in jobs:
        assert job.status == "succeeded", (job.error_code, job.error_message)
        rec = records[job.prediction_id]
        assert [o.sha256 for o in job.outputs] == [f["sha256"] for f in rec["files"]]
        assert (job.predict_time, job.total_time) == (rec["metrics"]["predict_time"], rec["metrics"]["total_time"])
        assert job.polls == 0
        # Detected from the push: within a second of completion, not at the 90 s safety-net poll.
        assert job.detection_lag is not None and job.detection_lag < 5.0, job.detection_lag
    assert _gets(stats) == 0, stats["requests"]
    assert stats["webhooks_sent"] >= len(ids)


def test_failed_pushes_fall_back_to_the_safety_net_poll(tmp_path: Path, sqlite_url: str, redis_url: str) -> None:
    (port,) = free_ports(1)
    # Every delivery attempt fails and Replicate gives up: only polling can finish these jobs.
    sim = run_in_thread(SimConfig(start_delay=0.1, predict_seconds=0.5, webhook_fail_rate=1.0,
                                  webhook_retry_seconds=0))
    # With webhooks on, the safety-net poll is sent by the sweeper (beat) once next_check_at passes.
    env = {"GENQUEUE_WEBHOOK_URL": f"http://127.0.0.1:{port}"}
    try:
        with pipeline(tmp_path, sqlite_url, redis_url, sim.base_url, concurrency=4, env_extra=env,
                      api_port=port, beat=True) as p:
            ids = p.submit(6)
            running = p.wait(ids, timeout=30, statuses=("running",))
            time.sleep(6)  # every prediction finished long ago, and a sweep has run: nobody polled
            assert [j.status for j in p.jobs(ids)] == ["running"] * len(ids)
            assert _gets(httpx.get(f"{sim.base_url}/_sim/stats", timeout=30).json()) == 0
            # The safety net is due SAFETY_POLL (90 s) after the create; bring it forward, not the clock.
            due = [(j.next_check_at - j.submitted_at).total_seconds() for j in running]
            assert all(88 <= d <= 92 for d in due), due
            with p.sessions.begin() as s:
                s.execute(update(Job).where(Job.id.in_(ids)).values(next_check_at=utcnow() - timedelta(seconds=1)))
            jobs = p.wait(ids, timeout=60)
            stats = httpx.get(f"{sim.base_url}/_sim/stats", timeout=30).json()
    finally:
        sim.stop()
    assert [j.status for j in jobs] == ["succeeded"] * len(ids)
    assert _gets(stats) >= len(ids)  # every job was finished by a poll the sweeper sent
    assert stats["webhooks_sent"] == 0
