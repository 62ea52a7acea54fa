"""The fleet's Replicate budget learned from the account, with real parts: the simulator over
loopback playing a low-credit account (6 creates/min, burst 1) or a normal one, Celery worker
processes, Redis, SQLite. Measured at the simulator's own counters."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from genqueue.simulator.config import SimConfig
from genqueue.simulator.server import run_in_thread
from genqueue.worker.ratelimit import HEADROOM, RateLimiter
from tests.support.pipeline import Pipeline, pipeline

KNOBS = dict(start_delay=0.1, predict_seconds=0.3, min_cancel_after=1.0)


@contextmanager
def fleet(tmp: Path, redis_url: str, preset: str) -> Iterator[tuple[Pipeline, str]]:
    sim = run_in_thread(SimConfig(**KNOBS))  # type: ignore[arg-type]
    httpx.post(f"{sim.base_url}/_sim/config", json={"preset": preset}, timeout=10).raise_for_status()
    try:
        # Two worker processes of 4: creates are spread over processes that share only Redis.
        with pipeline(tmp, f"sqlite:///{tmp}/genqueue.db", redis_url, sim.base_url,
                      env_extra={"GENQUEUE_LOG_LEVEL": "WARNING"}) as p:
            p.stack.add("worker-2", "worker", "--concurrency", "4")
            yield p, sim.base_url
    finally:
        sim.stop()


def sim_stats(sim_url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{sim_url}/_sim/stats", timeout=30).json())


def create_times(p: Pipeline) -> list[float]:
    return sorted(datetime.fromisoformat(r["created_at"]).timestamp() for r in p.sim_records().values())


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_low_credit_account_is_paced_at_six_a_minute_without_a_429_storm(tmp_path: Path, redis_url: str) -> None:
    with fleet(tmp_path, redis_url, "low_credit") as (p, sim_url):
        ids = p.submit(6)
        jobs = p.wait(ids, timeout=150)
        stats = sim_stats(sim_url)
        times = create_times(p)
    assert [j.status for j in jobs] == ["succeeded"] * 6, [(j.error_code, j.error_message) for j in jobs]
    throttled = stats["throttled_429_by_kind"]
    print(f"low credit: 6 jobs, creates {stats['creates']}, 429s by kind {throttled}, "
          f"creates/min {5 / (times[-1] - times[0]) * 60:.2f}")
    assert throttled["create"] <= 2 and throttled["read"] == 0
    assert stats["creates"] == 6  # a 429 creates nothing; no create was repeated
    assert 5 / (times[-1] - times[0]) * 60 <= 6.0  # the account's pace, never faster
    learned = RateLimiter(redis.Redis.from_url(redis_url)).account("create")
    assert learned.rate == pytest.approx(0.1)


@pytest.mark.timeout(120)
def test_normal_account_is_not_throttled_below_its_budget(tmp_path: Path, redis_url: str) -> None:
    with fleet(tmp_path, redis_url, "normal") as (p, sim_url):
        ids = p.submit(40)
        jobs = p.wait(ids, timeout=60)
        stats = sim_stats(sim_url)
        times = create_times(p)
    assert all(j.status == "succeeded" for j in jobs)
    per_min = (len(times) - 1) / (times[-1] - times[0]) * 60
    print(f"normal: 40 jobs, 429s {stats['throttled_429']}, creates/min {per_min:.0f}")
    assert stats["throttled_429"] == 0
    limiter = RateLimiter(redis.Redis.from_url(redis_url))
    assert limiter.account("create").rate == 10.0 and limiter.account("read").rate == 50.0
    assert limiter.rate_per_min("create") == pytest.approx(600 * HEADROOM)
    # A rule that read the headers as a rate (one request per reset second) would make this 60/min.
    assert per_min > 200
