"""PostgreSQL refusing connections for 15 s and the API restarted mid-run: nothing lost, nothing
created twice. PostgreSQL is reached through a loopback proxy that the test takes down, so the
shared server other tests use is never touched."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import httpx
import redis

from genqueue.cli.stack import free_port, wait_http
from genqueue.models.keys import Role, create_key
from genqueue.simulator.config import SimConfig
from genqueue.simulator.server import run_in_thread
from tests.conftest import redis_base
from tests.support.pipeline import VERSION, pipeline
from tests.support.tcpproxy import TcpProxy

JOBS_PER_PHASE = 25


def _job(i: int) -> dict[str, object]:
    return {"version": VERSION, "input": {"prompt": f"outage {i} {uuid.uuid4().hex}", "aspect_ratio": "16:9",
                                          "steps": 4, "api_key": "sk_outage_fake_not_real"}}


def test_postgres_outage_and_api_restart_lose_nothing(tmp_path: Path, pg_via_proxy: tuple[str, TcpProxy]) -> None:
    db_url, proxy = pg_via_proxy
    redis_url = f"{redis_base()}/4"
    redis.Redis.from_url(redis_url).flushdb()
    sim = run_in_thread(SimConfig(start_delay=0.2, predict_seconds=1.0, fault_429=0.05, fault_5xx=0.03))
    env: dict[str, str] = {}
    try:
        with pipeline(tmp_path, db_url, redis_url, sim.base_url, beat=True, env_extra=env) as p:
            with p.sessions.begin() as s:
                _, key = create_key(s, "outage", Role.ADMIN)
            port = free_port()
            api = p.stack.add("api", "api", "--port", str(port))
            base = f"http://127.0.0.1:{port}"
            assert wait_http(f"{base}/healthz")
            http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            r = http.post("/v1/jobs/batch", json={"jobs": [_job(i) for i in range(JOBS_PER_PHASE)]})
            assert r.status_code == 202, r.text
            ids = [j["id"] for j in r.json()["jobs"]]
            api.signal(signal.SIGKILL)  # the API dies mid-run and comes back
            api.proc.wait(10)  # type: ignore[union-attr]
            api.start()
            assert wait_http(f"{base}/healthz")
            for i in range(JOBS_PER_PHASE):
                r = http.post("/v1/jobs", json=_job(100 + i))
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])
            proxy.down()  # PostgreSQL refuses connections for 15 s while work is in flight
            time.sleep(1)
            assert http.get("/readyz").status_code == 503
            time.sleep(14)
            proxy.start()
            jobs = p.wait(ids, timeout=240)
            assert http.get("/readyz").status_code == 200
            records = p.sim_records()
            for job in jobs:
                assert job.status == "succeeded", (job.id, job.error_code, job.error_message)
                rec = records[job.prediction_id]
                assert rec["duplicates"] == 1, job.id
                assert [o.sha256 for o in job.outputs] == [f["sha256"] for f in rec["files"]]
                assert (job.predict_time, job.total_time) == (rec["metrics"]["predict_time"],
                                                              rec["metrics"]["total_time"])
            assert len(records) == len(ids)  # one prediction per job, none orphaned
            http.close()
    finally:
        sim.stop()
        redis.Redis.from_url(redis_url).flushdb()
