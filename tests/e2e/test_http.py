"""The HTTP API end to end, on SQLite and PostgreSQL: `genqueue migrate`, `genqueue keys create`,
`genqueue api` and `genqueue worker` as processes, the simulator on loopback, everything over real HTTP."""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from e2e_support import FAKE_API_KEY, VERSION, LiveStack, job_input, live_stack
from sqlalchemy import create_engine, inspect, text


def _create(client: httpx.Client, prompt: str, **extra: Any) -> dict[str, Any]:
    resp = client.post("/v1/jobs", json={"version": VERSION, "input": job_input(prompt, **extra)})
    assert resp.status_code == 202, resp.text
    job: dict[str, Any] = resp.json()
    assert job["input"]["api_key"] == "***", job
    assert FAKE_API_KEY not in resp.text
    return job


def _check_succeeded(live: LiveStack, client: httpx.Client, job: dict[str, Any]) -> None:
    assert job["status"] == "succeeded", job
    assert job["error"] is None, job
    assert job["prediction_id"], job
    rec = live.sim_record(job["prediction_id"])
    assert rec["status"] == "succeeded", rec
    assert rec["duplicates"] == 1, f"the prediction was created more than once: {rec}"
    # The timings Replicate reported are the ones the job shows.
    for name in ("predict_time", "total_time"):
        assert job["metrics"][name] == pytest.approx(rec["metrics"][name], abs=1e-6), (name, job, rec)
    # The stored bytes are exactly what the simulator served.
    assert len(job["outputs"]) == 1 == len(rec["files"]), (job, rec)
    out = job["outputs"][0]
    assert out["index"] == 0 and out["content_type"] == "image/png", out
    dl = client.get(f"/v1/jobs/{job['id']}/outputs/0")
    assert dl.status_code == 200, dl.text
    assert dl.headers["content-type"].startswith("image/png"), dl.headers
    assert dl.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(dl.content) == out["size"]
    sha = hashlib.sha256(dl.content).hexdigest()
    assert sha == out["sha256"] == rec["files"][0]["sha256"], (sha, out, rec["files"])
    assert out["url"].endswith(f"/v1/jobs/{job['id']}/outputs/0"), out


def _secret_hits_in_database(db_url: str, needle: str) -> list[str]:
    engine = create_engine(db_url)
    hits = []
    try:
        with engine.connect() as conn:
            for table in inspect(conn).get_table_names():
                for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                    rendered = str(tuple(row))
                    if needle in rendered:
                        hits.append(f"{table}: {rendered[:300]}")
    finally:
        engine.dispose()
    return hits


def _secret_hits_in_redis(redis_url: str, needle: str) -> list[str]:
    client = redis.Redis.from_url(redis_url)
    hits = []
    try:
        for key in client.scan_iter(count=500):
            blob = client.dump(key) or b""
            if needle.encode() in blob:
                hits.append(key.decode(errors="replace"))
    finally:
        client.close()
    return hits


@pytest.mark.timeout(480)
def test_http_api_end_to_end(tmp_path: Path, db_url: str, redis_url: str) -> None:
    with live_stack(tmp_path, db_url, redis_url, concurrency=2) as live, live.client() as client:
        # --- probes ---------------------------------------------------------------------------
        assert httpx.get(f"{live.api_url}/healthz", timeout=10).status_code == 200
        ready = httpx.get(f"{live.api_url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert httpx.get(f"{live.api_url}/v1/jobs", timeout=10).status_code == 401

        # --- one job, all the way ---------------------------------------------------------------
        first_prompt = f"e2e ocean {uuid.uuid4().hex}"
        job = _create(client, first_prompt)
        assert job["status"] in ("queued", "submitting", "running", "storing", "succeeded"), job
        assert job["version"] == VERSION.split(":", 1)[1] or job["version"] == VERSION, job
        done = live.wait_job(client, job["id"], timeout=60)
        _check_succeeded(live, client, done)
        assert done["input"]["api_key"] == "***"

        # --- listing --------------------------------------------------------------------------
        listed = client.get("/v1/jobs", params={"limit": 200})
        assert listed.status_code == 200, listed.text
        assert job["id"] in [j["id"] for j in listed.json()["jobs"]]
        only_ok = client.get("/v1/jobs", params={"status": "succeeded"}).json()["jobs"]
        assert job["id"] in [j["id"] for j in only_ok]
        assert all(j["input"].get("api_key") in (None, "***") for j in listed.json()["jobs"])

        # --- a batch of 5 ---------------------------------------------------------------------
        batch = client.post("/v1/jobs/batch", json={"jobs": [
            {"version": VERSION, "input": job_input(f"e2e batch {i} {uuid.uuid4().hex}")} for i in range(5)]})
        assert batch.status_code == 202, batch.text
        ids = [j["id"] for j in batch.json()["jobs"]]
        assert len(set(ids)) == 5
        for job_id in ids:
            _check_succeeded(live, client, live.wait_job(client, job_id, timeout=60))

        # --- validation: a 422 that names the field ---------------------------------------------
        bad = client.post("/v1/jobs", json={"version": VERSION, "input": job_input("x", aspect_ratio="7:3")})
        assert bad.status_code == 422, bad.text
        err = bad.json()["error"]
        assert err["code"] == "validation_error", err
        assert "input.aspect_ratio" in [f["field"] for f in err["fields"]], err
        missing = client.post("/v1/jobs", json={"version": VERSION, "input": {"aspect_ratio": "1:1"}})
        assert missing.status_code == 422, missing.text
        assert any(f["field"] == "input.prompt" for f in missing.json()["error"]["fields"]), missing.text
        assert FAKE_API_KEY not in bad.text

        # --- cancel a long job -----------------------------------------------------------------
        live.set_sim(predict_seconds=60.0)
        long_job = _create(client, f"e2e long {uuid.uuid4().hex}")
        running = live.wait_job(client, long_job["id"], statuses=("running",), timeout=30)
        assert running["prediction_id"], running
        cancel = client.post(f"/v1/jobs/{long_job['id']}/cancel")
        assert cancel.status_code in (200, 202), cancel.text
        assert cancel.json()["cancel_requested"] is True or cancel.json()["status"] == "canceled", cancel.text
        started = time.monotonic()
        canceled = live.wait_job(client, long_job["id"], timeout=30)
        assert canceled["status"] == "canceled", canceled
        assert time.monotonic() - started < 30
        rec = live.sim_record(running["prediction_id"])
        assert rec["status"] == "canceled" and rec["canceled_by_request"], rec
        again = client.post(f"/v1/jobs/{long_job['id']}/cancel")
        assert again.status_code == 409, again.text
        live.set_sim(predict_seconds=0.5)

        # --- the sealed secret never shows up in logs or at rest --------------------------------
        seen = live.sim_records()
        assert len(seen) == 7, seen.keys()  # 1 + 5 + 1: no duplicate creates
        assert all(r["duplicates"] == 1 for r in seen.values()), seen
        assert all("api_key" in r["input_keys"] for r in seen.values()), "the secret did not reach Replicate"

    logs = {p.name: p.read_text(errors="replace") for p in (tmp_path / "logs").glob("*.log")}
    assert set(logs) >= {"api.log", "worker.log"}, logs.keys()
    assert "Traceback" not in logs["api.log"], logs["api.log"][-4000:]
    assert job["id"] in logs["worker.log"]  # the scan below reads real logs
    for name, body in logs.items():
        assert FAKE_API_KEY not in body, f"{name} contains the job's api_key"
    assert _secret_hits_in_database(db_url, first_prompt), "the database scan finds nothing at all"
    assert _secret_hits_in_database(db_url, FAKE_API_KEY) == []
    assert _secret_hits_in_redis(redis_url, FAKE_API_KEY) == []
