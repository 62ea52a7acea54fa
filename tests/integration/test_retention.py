"""Retention, erasure and real cost with real parts: the simulator over loopback, Celery worker and beat
processes, the API process, PostgreSQL or SQLite, and both storages (a local folder; SeaweedFS as S3).

- Retention deletes the bytes of expired jobs in storage and nothing else: the other jobs' objects and
  rows stay; the expired jobs keep their row, status and output records, lose their input, and their
  outputs answer 410 `output_deleted`. `DELETE /v1/jobs/{id}/outputs` does the same at once.
- A succeeded job's sealed secrets are gone (dropped in the success compare-and-set).
- Each job's cost is the simulator's own `predict_time` and the outputs stored, times the price table;
  /v1/stats adds the same figures up by model, key and day.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import create_engine, text

from genqueue.bootstrap import Root
from genqueue.intake import JobRequest
from genqueue.models.keys import Role, create_key
from genqueue.simulator.config import SimConfig
from genqueue.simulator.server import run_in_thread
from genqueue.storage import Storage
from tests.conftest import PG_ADMIN_URL, redis_base
from tests.support.pipeline import FAKE_API_KEY, VERSION, Pipeline, pipeline
from tests.support.seaweed import free_ports, seaweed_s3

MODEL = "jigsawstack/image-generation"
PER_SECOND, PER_OUTPUT = 0.001, 0.003
KNOBS = dict(start_delay=0.1, predict_seconds=0.4, fail_rate=0.0, fault_429=0.0, fault_5xx=0.0, fault_drop=0.0,
             fault_lost_create=0.0, fault_first_download=0.0, output_mode="url", retention_seconds=3600.0)


@pytest.fixture(scope="module", params=["local-sqlite", "s3-postgresql"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pipeline, str]]:
    tmp = tmp_path_factory.mktemp(f"retention-{request.param}")
    s3 = request.param.startswith("s3")
    db_name = f"gq_ret_{uuid.uuid4().hex[:10]}"
    if s3:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{db_name}"'))
        db_url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + db_name
    else:
        db_url = f"sqlite:///{tmp}/genqueue.db"
    redis_url = f"{redis_base()}/{9 if s3 else 8}"
    redis.Redis.from_url(redis_url).flushdb()
    prices = tmp / "prices.json"
    prices.write_text(json.dumps({"models": {MODEL: {"per_second": PER_SECOND, "per_output": PER_OUTPUT}},
                                  "default": {"per_second": 0.5}}))
    env = {"GENQUEUE_PRICE_TABLE": str(prices)}
    sim = run_in_thread(SimConfig(**KNOBS))  # type: ignore[arg-type]
    [port] = free_ports(1)
    try:
        with seaweed_s3(tmp / "seaweed") if s3 else nullcontext() as server:
            if server is not None:
                bucket = f"gq-ret-{uuid.uuid4().hex[:8]}"
                env.update(STORAGE_URL=f"s3://{bucket}/outputs", S3_ENDPOINT_URL=server.endpoint_url,
                           AWS_ACCESS_KEY_ID=server.access_key, AWS_SECRET_ACCESS_KEY=server.secret_key,
                           AWS_REGION="us-east-1")
                from genqueue.storage.s3 import build_s3_client

                build_s3_client(endpoint_url=server.endpoint_url, aws_access_key_id=server.access_key,
                                aws_secret_access_key=server.secret_key).create_bucket(Bucket=bucket)
            with pipeline(tmp, db_url, redis_url, sim.base_url, beat=True, concurrency=2, env_extra=env,
                          api_port=port) as p:
                yield p, f"http://127.0.0.1:{port}"
    finally:
        sim.stop()
        redis.Redis.from_url(redis_url).flushdb()
        if s3:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
            admin.dispose()


def _submit(p: Pipeline, n: int, **extra: Any) -> list[str]:
    reqs = [JobRequest(version=VERSION, input={"prompt": f"sea {uuid.uuid4().hex}", "output_format": "png",
                                               "steps": 4, "api_key": FAKE_API_KEY}, **extra) for _ in range(n)]
    jobs, _ = p.intake.submit(reqs, batch=n > 1)
    return [j.id for j in jobs]


def _admin(p: Pipeline) -> dict[str, str]:
    root = Root(p.settings)
    with root.sessions.begin() as s:
        _, plaintext = create_key(s, "ops", Role.ADMIN)
    root.close()
    return {"Authorization": f"Bearer {plaintext}"}


def _storage(p: Pipeline) -> Storage:
    return Root(p.settings).storage


def _wait_deleted(p: Pipeline, ids: list[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(j.outputs_deleted_at is not None for j in p.jobs(ids)):
            return
        time.sleep(0.3)
    raise AssertionError(f"retention did not delete the outputs of {ids} in {timeout}s")


def test_retention_erasure_secrets_and_costs(stack: tuple[Pipeline, str]) -> None:
    p, api = stack
    p.sim(**KNOBS)
    keep = _submit(p, 2)  # the default retention (30 days)
    expire = _submit(p, 2, retention_days=0)  # due as soon as they end
    done = p.wait(keep + expire)
    assert {j.status for j in done} == {"succeeded"}
    storage = _storage(p)
    kept_keys = {j.id: [o.storage_key for o in j.outputs] for j in p.jobs(keep)}
    expired_keys = {j.id: [o.storage_key for o in j.outputs] for j in p.jobs(expire)}
    assert all(kept_keys.values()) and all(expired_keys.values())

    # Retention: the sweeper (beat, every 2 s) deletes the expired jobs' bytes and inputs, nothing else.
    _wait_deleted(p, expire)
    for job in p.jobs(expire):
        assert not any(storage.exists(k) for k in expired_keys[job.id])
        assert job.input_public == {} and job.input_sealed is None and job.status == "succeeded"
        assert [o.index for o in job.outputs] == list(range(len(expired_keys[job.id])))  # records stay
    for job in p.jobs(keep):
        assert job.outputs_deleted_at is None and job.input_public["prompt"].startswith("sea ")
        for out in job.outputs:
            chunks, _, _ = storage.open(out.storage_key)
            assert hashlib.sha256(b"".join(chunks)).hexdigest() == out.sha256
        assert job.expires_at is not None and job.expires_at > job.created_at
    # Secrets: a succeeded job's sealed input was dropped in the compare-and-set that made it succeed.
    assert all(j.input_sealed is None for j in p.jobs(keep + expire))

    auth = _admin(p)
    with httpx.Client(base_url=api, headers=auth, timeout=30) as http:
        gone = http.get(f"/v1/jobs/{expire[0]}/outputs/0")
        assert gone.status_code == 410 and gone.json()["error"]["code"] == "output_deleted"
        # Erasure on request: at once, the bytes and the input; a second call changes nothing.
        erased = http.delete(f"/v1/jobs/{keep[0]}/outputs")
        assert erased.status_code == 200, erased.text
        assert erased.json()["outputs_deleted_at"] is not None and erased.json()["input"] == {}
        assert not any(storage.exists(k) for k in kept_keys[keep[0]])
        assert http.delete(f"/v1/jobs/{keep[0]}/outputs").json()["outputs_deleted_at"] == \
            erased.json()["outputs_deleted_at"]
        assert http.get(f"/v1/jobs/{keep[0]}/outputs/0").status_code == 410
        still = http.get(f"/v1/jobs/{keep[1]}/outputs/0")
        assert still.status_code == 200
        assert hashlib.sha256(still.content).hexdigest() == p.jobs([keep[1]])[0].outputs[0].sha256

        # Cost: the simulator's metrics times the price table, per job and summed by /v1/stats.
        records = p.sim_records()
        expected = {}
        for job in p.jobs(keep + expire):
            sim_predict = records[job.prediction_id]["metrics"]["predict_time"]
            assert job.predict_time == pytest.approx(sim_predict)
            expected[job.id] = sim_predict * PER_SECOND + len(job.outputs) * PER_OUTPUT
            view = http.get(f"/v1/jobs/{job.id}").json()
            assert view["cost"] == pytest.approx(expected[job.id], abs=1e-9)
        stats = http.get("/v1/stats", params={"window": "all", "cost_by_metadata": "team"}).json()
        cost = stats["cost"]
        total = sum(expected.values())
        assert cost["estimated_spend"] == pytest.approx(total, abs=1e-6)
        [by_model] = [m for m in cost["by_model"] if m["model"] == MODEL]
        assert by_model["spend"] == pytest.approx(total, abs=1e-6)
        assert by_model["price"] == {"per_second": PER_SECOND, "per_output": PER_OUTPUT}
        assert sum(d["spend"] for d in cost["by_day"]) == pytest.approx(total, abs=1e-6)
        assert stats["retention"]["outputs_deleted"] == 3 and stats["retention"]["overdue"] == 0
        metrics = http.get("/metrics").text
        assert f'genqueue_cost_usd_today{{model="{MODEL}"}}' in metrics
        assert "genqueue_retention_overdue 0.0" in metrics
