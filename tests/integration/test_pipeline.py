"""The whole path with real parts: simulator over loopback, Celery worker processes, Redis, and
SQLite and PostgreSQL. Each scenario checks the job rows against the simulator's own record."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

from genqueue.models.base import utcnow
from genqueue.models.tables import JobOutput
from genqueue.simulator.config import SimConfig
from genqueue.simulator.server import run_in_thread
from tests.conftest import PG_ADMIN_URL, redis_base
from tests.support.pipeline import Pipeline, pipeline

BASE_KNOBS = dict(start_delay=0.2, predict_seconds=0.5, fail_rate=0.0, fault_429=0.0, fault_5xx=0.0,
                  fault_drop=0.0, fault_lost_create=0.0, fault_first_download=0.0, output_mode="url",
                  retention_seconds=3600.0)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def pipe(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    tmp = tmp_path_factory.mktemp(f"pipe-{request.param}")
    db_name = f"gq_pipe_{uuid.uuid4().hex[:10]}"
    if request.param == "sqlite":
        db_url = f"sqlite:///{tmp}/genqueue.db"
    else:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{db_name}"'))
        db_url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + db_name
    redis_url = f"{redis_base()}/{7 if request.param == 'sqlite' else 6}"
    redis.Redis.from_url(redis_url).flushdb()
    sim = run_in_thread(SimConfig(min_cancel_after=1.0, **BASE_KNOBS))  # type: ignore[arg-type]
    try:
        with pipeline(tmp, db_url, redis_url, sim.base_url) as p:
            yield p
    finally:
        sim.stop()
        redis.Redis.from_url(redis_url).flushdb()
        if request.param == "postgresql":
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
            admin.dispose()


@pytest.fixture
def p(pipe: Pipeline) -> Pipeline:
    pipe.sim(**BASE_KNOBS)
    return pipe


def _stored_sha(p: Pipeline, out: JobOutput) -> str:
    path = Path(out.storage_uri.removeprefix("file://"))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_succeeded_outputs_and_metrics_match_the_simulator(p: Pipeline) -> None:
    ids = p.submit(6)
    jobs = p.wait(ids)
    records = p.sim_records()
    for job in jobs:
        assert job.status == "succeeded", (job.error_code, job.error_message)
        rec = records[job.prediction_id]
        assert rec["duplicates"] == 1 and job.attempts == 1
        assert job.predict_time == rec["metrics"]["predict_time"]
        assert job.total_time == rec["metrics"]["total_time"]
        assert [o.sha256 for o in job.outputs] == [f["sha256"] for f in rec["files"]]
        assert _stored_sha(p, job.outputs[0]) == job.outputs[0].sha256
        assert job.outputs[0].content_type == "image/png" and job.outputs[0].storage_key.endswith("/0.png")
        assert job.end_to_end_time is not None and job.end_to_end_time >= job.total_time
        assert job.queue_time is not None and job.detection_lag is not None and job.storage_time is not None
        assert job.start_time is not None and job.start_time >= 0


def test_failed_prediction_keeps_replicates_error(p: Pipeline) -> None:
    p.sim(fail_rate=1.0)
    [job] = p.wait(p.submit(1))
    assert job.status == "failed" and job.error_code == "prediction_failed"
    assert job.error_message and job.error_message == p.sim_records()[job.prediction_id]["error"]
    assert job.prediction_status == "failed" and job.predict_time is not None


def test_cancel_running_job_cancels_on_replicate(p: Pipeline) -> None:
    p.sim(predict_seconds=60.0)
    [jid] = p.submit(1)
    p.wait([jid], statuses=("running",))
    with p.sessions.begin() as s:
        s.execute(text("UPDATE jobs SET cancel_requested_at = :now WHERE id = :id"),
                  {"now": utcnow(), "id": jid})
    p.enqueuer.cancel(jid)
    [job] = p.wait([jid], timeout=30)
    assert job.status == "canceled" and job.prediction_status == "canceled"
    assert p.sim_records()[job.prediction_id]["canceled_by_request"] is True


def test_deadline_before_start_is_aborted(p: Pipeline) -> None:
    p.sim(start_delay=60.0)
    [job] = p.wait(p.submit(1, deadline_seconds=5), timeout=40)
    assert job.status == "failed" and job.error_code == "deadline_exceeded"
    assert job.prediction_status == "aborted"


def test_expired_output_fails_with_output_expired(p: Pipeline) -> None:
    p.sim(retention_seconds=0.0)
    [job] = p.wait(p.submit(1))
    assert job.status == "failed" and job.error_code == "output_expired"


def test_data_uri_output_is_stored(p: Pipeline) -> None:
    p.sim(output_mode="data_uri")
    [job] = p.wait(p.submit(1))
    assert job.status == "succeeded", job.error_message
    assert len(job.outputs) == 1 and job.outputs[0].content_type == "image/png"
    assert _stored_sha(p, job.outputs[0]) == job.outputs[0].sha256


def test_list_output_stores_every_file(p: Pipeline) -> None:
    p.sim(output_mode="list")
    [job] = p.wait(p.submit(1))
    assert job.status == "succeeded", job.error_message
    rec = p.sim_records()[job.prediction_id]
    assert [o.index for o in job.outputs] == [0, 1]
    assert [o.sha256 for o in job.outputs] == [f["sha256"] for f in rec["files"]]


def test_429_storm_and_dropped_connections_lose_nothing_and_never_duplicate(p: Pipeline) -> None:
    p.sim(fault_429=0.4, fault_drop=0.15, fault_first_download=0.5)
    ids = p.submit(8)
    jobs = p.wait(ids, timeout=150)
    records = p.sim_records()
    for job in jobs:
        assert job.status == "succeeded", (job.error_code, job.error_message)
        assert records[job.prediction_id]["duplicates"] == 1
        assert [o.sha256 for o in job.outputs] == [f["sha256"] for f in records[job.prediction_id]["files"]]
    mine = {j.prediction_id for j in jobs}
    prompts_created = [r for r in records.values() if r["id"] in mine]
    assert len(prompts_created) == len(ids)


def test_lost_create_response_is_adopted_not_duplicated(p: Pipeline) -> None:
    p.sim(fault_lost_create=0.5)
    ids = p.submit(6)
    jobs = p.wait(ids, timeout=150)
    records = p.sim_records()
    for job in jobs:
        assert job.status == "succeeded", (job.error_code, job.error_message)
        assert records[job.prediction_id]["duplicates"] == 1
