"""Restarts the other chaos tests do not cover (tests/chaos/chaos.py does the work):

* PostgreSQL really restarted (a server of the run's own: stopped, every connection cut, started 5 s
  later with its data);
* Redis really restarted: SIGTERM (the append-only file is flushed), every client connection
  dropped, started again on the same port a few seconds later;
* the beat SIGKILLed, and while it is down Redis flushed and a worker SIGKILLed; the beat restarted
  5 s later: only its sweeps can recover what they held;
* two beats by mistake (the sweeper runs twice as often) while a worker is killed and Redis flushed.

Each run is checked job by job against the simulator (terminal, correct, one prediction per job), and
reports the recovery time per fault kind: for jobs active when the fault hit, the time from the fault's
clear to their next status change or finished_at. That figure is printed, not asserted (noisy machine).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chaos.chaos import ChaosConfig, Report, run
from tests.chaos.test_chaos import _check

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# Each run has a redis-server of its own (AOF on), so no DB index of the shared one is needed.
COMMON: dict[str, Any] = dict(
    jobs=80, workers=2, concurrency=4, db="postgresql", private_redis=True, predict_seconds=0.5,
    start_delay=0.2, jitter=0.3, fail_rate=0.05, fault_429=0.10, fault_5xx=0.05, fault_drop=0.02,
    fault_first_download=0.05, kills=0, flushes=0, timeout=240,
)


def _check_outcomes(report: Report, cfg: ChaosConfig) -> None:
    _check(report)
    assert report.statuses.get("succeeded", 0) + report.statuses.get("failed", 0) == cfg.jobs
    assert set(report.error_codes) <= {"prediction_failed"}


def _run_fault(tmp_path: Path, kind: str, said: tuple[str, ...], **knobs: Any) -> Report:
    """One run with one fault: outcomes checked, the injection and its clearing logged (`said`), and
    the fault hit jobs in flight (its recovery figure is in the printed summary)."""
    cfg = ChaosConfig(**{**COMMON, **knobs}, workdir=tmp_path)
    report = run(cfg)
    _check_outcomes(report, cfg)
    for words in said:
        assert any(words in i for i in report.injections), (words, report.injections)
    rec = report.recovery.get(kind)
    assert rec is not None, report.faults
    assert rec["n"] + rec["finished_during"] > 0, rec
    return report


def test_postgres_restarted_loses_nothing(tmp_path: Path) -> None:
    """A real restart of a PostgreSQL server of the run's own (not a proxy cut): every connection of
    every process dropped, the server away for 5 s, then back with its data."""
    _run_fault(tmp_path, "pg-restart", ("PostgreSQL stopped", "PostgreSQL started again"),
               pg_restarts=1, pg_down=5.0)


def test_redis_restart_with_connections_dropped_loses_nothing(tmp_path: Path) -> None:
    report = _run_fault(tmp_path, "redis-restart", ("SIGTERM Redis", "Redis back"), redis_restarts=1, redis_down=3.0)
    assert report.exited == []  # the workers reconnect by themselves (genqueue.worker.broker)


def test_beat_killed_and_restarted_while_messages_are_lost(tmp_path: Path) -> None:
    report = _run_fault(tmp_path, "beat-kill", ("SIGKILL beat", "restart beat"), beat_kills=1, beat_down=5.0,
                        beat_kill_losses=True)
    # What the FLUSHDB and the killed worker took is recovered by whichever owns it: the dispatcher
    # rebuilds the lanes (its epoch key), the page reader notices finished predictions, the restarted
    # beat's sweeps re-send lost copies and dead workers' creates. Every job ends correct (_run_fault),
    # and jobs hit by the fault moved again within seconds.
    assert report.recovery["beat-kill"]["n"] == 0 or report.recovery["beat-kill"]["p95"] < 15


def test_two_beats_sweep_twice_as_often_and_create_nothing_twice(tmp_path: Path) -> None:
    cfg = ChaosConfig(**{**COMMON, "kills": 1, "flushes": 1}, beats=2, workdir=tmp_path)
    report = run(cfg)
    _check_outcomes(report, cfg)
    assert set(report.sweeps_sent) == {"beat", "beat-2"}
    assert all(n > 0 for n in report.sweeps_sent.values()), report.sweeps_sent
    assert sum(report.sweeper_requeued.values()) > 0
