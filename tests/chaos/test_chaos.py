"""The bounded CI part of the durability run (tests/chaos/chaos.py): real worker, beat and simulator
processes, mixed API faults, a SIGKILLed worker and an emptied Redis; every job is then checked
against the simulator's record and the report must hold zero violations."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.chaos import ChaosConfig, Report, run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# Redis DB indexes of these tests' own (tests/conftest.py cycles 8-15, test_pipeline uses 6-7,
# benchmarks 5; chaos.py's command-line default is 3).
REDIS_DB_MIXED = 2
REDIS_DB_LOST_CREATE = 1


def _check(report: Report) -> None:
    print(report.summary())
    assert report.drain_seconds is not None, report.summary()
    assert report.violations == [], report.summary()
    assert report.duplicates == 0
    assert report.sim_predictions == report.jobs  # one prediction per job, no more


def test_mixed_faults_worker_kill_and_redis_flush_lose_nothing(tmp_path: Path) -> None:
    cfg = ChaosConfig(jobs=120, workers=2, concurrency=4, db="postgresql", redis_db=REDIS_DB_MIXED,
                      predict_seconds=0.5, start_delay=0.2, jitter=0.3, fail_rate=0.05, fault_429=0.10,
                      fault_5xx=0.05, fault_drop=0.02, fault_first_download=0.05, kills=1, flushes=1,
                      timeout=240, workdir=tmp_path)
    report = run(cfg)
    _check(report)
    assert any("SIGKILL" in i for i in report.injections) and any("FLUSHDB" in i for i in report.injections)
    assert report.statuses.get("succeeded", 0) + report.statuses.get("failed", 0) == cfg.jobs
    assert set(report.error_codes) <= {"prediction_failed"}
    assert report.sim_stats["throttled_429"] > 0 and report.sim_stats["faults_injected"].get("fault_5xx", 0) > 0


def test_lost_create_responses_are_adopted_never_duplicated(tmp_path: Path) -> None:
    cfg = ChaosConfig(jobs=60, workers=2, concurrency=4, db="postgresql", redis_db=REDIS_DB_LOST_CREATE,
                      predict_seconds=0.5, start_delay=0.2, jitter=0.3, fail_rate=0.0, fault_429=0.0,
                      fault_5xx=0.0, fault_drop=0.0, fault_first_download=0.0, fault_lost_create=0.2,
                      kills=0, flushes=0, timeout=180, workdir=tmp_path)
    report = run(cfg)
    _check(report)
    assert report.sim_stats["creates_lost"] > 0
    assert report.adopted_lost_creates >= report.sim_stats["creates_lost"]
    assert report.statuses == {"succeeded": cfg.jobs}


def test_retry_policies_under_failures_make_exactly_their_attempts_never_a_duplicate(tmp_path: Path) -> None:
    # A third of the predictions fail; every job may take 3 attempts. With a worker SIGKILLed and Redis
    # emptied (delayed requeues lost: the sweeper's audit puts those jobs back), each job still ends with
    # exactly the policy's attempts when all failed, one prediction per attempt, one after another.
    # A redis-server of the run's own (private_redis): flushing it touches nobody else's data.
    cfg = ChaosConfig(jobs=60, workers=2, concurrency=4, db="postgresql", redis_db=0, private_redis=True,
                      predict_seconds=0.4, start_delay=0.2, jitter=0.3, fail_rate=0.35, fault_429=0.05,
                      fault_5xx=0.03, fault_drop=0.02, fault_first_download=0.0, kills=1, flushes=1,
                      retry_attempts=3, timeout=300, workdir=tmp_path)
    report = run(cfg)
    print(report.summary())
    assert report.drain_seconds is not None, report.summary()
    assert report.violations == [], report.summary()
    assert report.duplicates == 0
    assert report.sim_predictions == report.total_tries  # one prediction per attempt, no more
    assert report.total_tries > cfg.jobs and "2" in report.tries  # retries did happen
    assert set(report.error_codes) <= {"prediction_failed"}
