"""Retry policies and replays with real parts: simulator over loopback failing every prediction
(`fail_rate=1`), Celery worker processes, Redis and PostgreSQL. Checked against the simulator's own
record: exactly the policy's number of attempts, one prediction per attempt, never two at once."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
import redis
from sqlalchemy import create_engine, select, text

from genqueue.intake import JobRequest, bulk
from genqueue.intake.requests import RetryPolicy
from genqueue.models.attempts import replay
from genqueue.models.base import utcnow
from genqueue.models.tables import JobAttempt
from genqueue.sched.ready import entry
from genqueue.simulator.config import SimConfig
from genqueue.simulator.server import run_in_thread
from genqueue.simulator.store import fingerprint
from tests.conftest import PG_ADMIN_URL, redis_base
from tests.support.pipeline import FAKE_API_KEY, VERSION, Pipeline, pipeline

KNOBS = dict(start_delay=0.1, predict_seconds=0.3, jitter=0.0, fail_rate=1.0, fault_429=0.0, fault_5xx=0.0,
             fault_drop=0.0, fault_lost_create=0.0, fault_first_download=0.0, output_mode="url")
REDIS_DB = 4  # this module's own index (see tests/chaos/test_chaos.py for the others)


@pytest.fixture(scope="module")
def p(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    tmp = tmp_path_factory.mktemp("retries")
    db_name = f"gq_retry_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{db_name}"'))
    redis_url = f"{redis_base()}/{REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    sim = run_in_thread(SimConfig(min_cancel_after=1.0, **KNOBS))  # type: ignore[arg-type]
    try:
        with pipeline(tmp, PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + db_name, redis_url, sim.base_url) as pipe:
            yield pipe
    finally:
        sim.stop()
        redis.Redis.from_url(redis_url).flushdb()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        admin.dispose()


def _request(max_attempts: int | None) -> tuple[JobRequest, dict[str, object]]:
    inp: dict[str, object] = {"prompt": f"storm {uuid.uuid4().hex}", "steps": 4, "api_key": FAKE_API_KEY}
    retry = RetryPolicy(max_attempts=max_attempts, on=["model_error"]) if max_attempts else None
    return JobRequest(version=VERSION, input=inp, retry=retry), inp


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _attempts(p: Pipeline, job_id: str) -> list[JobAttempt]:
    with p.sessions() as s:
        return list(s.scalars(select(JobAttempt).where(JobAttempt.job_id == job_id).order_by(JobAttempt.attempt)))


def test_policy_makes_exactly_its_attempts_one_at_a_time_then_a_replay_succeeds(p: Pipeline) -> None:
    p.sim(**KNOBS)
    reqs = [_request(3), _request(3), _request(None)]
    jobs, _ = p.intake.submit([r for r, _ in reqs], batch=True)
    ids = [j.id for j in jobs]
    done = p.wait(ids, timeout=120)
    records = p.sim_records()
    for job, (_, inp) in zip(done, reqs, strict=True):
        want = 3 if job.retry_max_attempts == 3 else 1
        assert job.status == "failed" and job.error_code == "prediction_failed"
        assert job.attempt == want and job.retries_left == 0
        past = _attempts(p, job.id)
        assert [a.attempt for a in past] == list(range(1, want))
        predictions = [a.prediction_id for a in past] + [job.prediction_id]
        assert len(set(predictions)) == want  # a new prediction per attempt
        mine = [r for r in records.values() if r["input_fingerprint"] == fingerprint(inp)]
        assert sorted(r["id"] for r in mine) == sorted(predictions)  # no create beyond one per attempt
        assert all(r["status"] == "failed" for r in mine)
        ordered = sorted(mine, key=lambda r: _ts(r["created_at"]))
        for before, after in itertools.pairwise(ordered):
            assert _ts(after["created_at"]) >= _ts(before["completed_at"])  # never two at once
        for a in past:
            assert a.status == "failed" and a.error_code == "prediction_failed" and a.metrics["predict_time"]
    # A replay (the route's SQL) of the policy job once the model is fixed: a fourth attempt, succeeded.
    p.sim(fail_rate=0.0)
    with p.sessions.begin() as s:
        out = replay(s, [ids[0]], utcnow())
    assert [q[0] for q in out.queued] == [ids[0]]
    p.intake.enqueue([entry(i, prio, key, created.timestamp()) for i, prio, key, created in out.queued])
    (job,) = p.wait([ids[0]], timeout=60)
    assert job.status == "succeeded" and job.attempt == 4 and len(_attempts(p, job.id)) == 3
    assert job.retries_left == 2  # a replay starts the policy afresh


def test_bulk_cancel_of_queued_and_running_jobs_leaves_nothing_running_at_the_simulator(p: Pipeline) -> None:
    p.sim(**{**KNOBS, "fail_rate": 0.0, "predict_seconds": 60.0})  # long predictions: caught while running
    reqs = [_request(None) for _ in range(40)]
    jobs, _ = p.intake.submit([r for r, _ in reqs], batch=True)
    ids = [j.id for j in jobs]
    p.wait(ids[:4], timeout=60, statuses=("running",))  # some running, the rest queued or on their way
    sinks = bulk.sinks(redis.Redis.from_url(p.settings.redis_url), p.intake.enqueue, p.enqueuer.cancel)
    flt = bulk.JobFilter(api_key_id=None, all_keys=True)
    done = bulk.run(p.sessions, sinks, "cancel", flt)
    assert done.matched == 40 and done.done + done.skipped == 40
    final = p.wait(ids, timeout=90)
    assert {j.status for j in final} == {"canceled"}
    fingerprints = {fingerprint(inp) for _, inp in reqs}
    mine = [r for r in p.sim_records().values() if r["input_fingerprint"] in fingerprints]
    assert mine and all(r["status"] == "canceled" for r in mine)  # no prediction left running
    assert all(r["duplicates"] == 1 for r in mine)
