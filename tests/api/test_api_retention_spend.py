"""Over HTTP: the spend cap's 429 (job, batch of jobs, NDJSON batch lines), retention_days in and out,
and who may erase a job's outputs, when."""

from __future__ import annotations

import pytest
from api_helpers import Api, body

from genqueue.models.base import utcnow
from genqueue.models.keys import update_limits
from genqueue.models.tables import JobOutput


def test_a_key_at_its_spend_cap_gets_429_naming_the_limit_and_the_reset(api: Api) -> None:
    with api.sessions.begin() as s:
        assert update_limits(s, api.key_ids["bob"], spend_limit=0.01, spend_period="month") is not None
    done = api.create("bob", body("billed"))["id"]
    api.set_job(done, status="succeeded", predict_time=10.0, finished_at=utcnow())  # 10 s x 0.0014 >= 0.01
    over = api.client.post("/v1/jobs", json=body("one more"), headers=api.auth("bob"))
    assert over.status_code == 429, over.text
    err = over.json()["error"]
    assert err["code"] == "spend_limit_reached"
    assert "0.01 USD per month" in err["message"] and "resets at" in err["message"]
    assert err["fields"][0]["field"] == "spend_limit"
    batch = api.client.post("/v1/jobs/batch", json={"jobs": [body("b1")]}, headers=api.auth("bob"))
    assert batch.status_code == 429
    lines = api.client.post("/v1/batches", content=b'{"version": "' + body()["version"].encode() + b'", '
                            b'"input": {"prompt": "x", "api_key": "sk_test_fake_1"}}\n',
                            headers={**api.auth("bob"), "Content-Type": "application/x-ndjson"})
    assert lines.status_code == 202 and lines.json()["counts"].get("queued", 0) == 0
    assert "spend_limit" in lines.json()["errors"][0]["reason"]
    assert api.count_jobs() == 1  # nothing accepted past the cap
    assert api.create("alice", body("another key"))["status"] == "queued"


def test_retention_days_per_job_and_erasure_rules(api: Api) -> None:
    short = api.create("alice", {**body("short"), "retention_days": 1})
    default = api.create("alice", body("default"))
    created = api.job(short["id"]).created_at
    assert (api.job(short["id"]).expires_at - created).days == 1
    assert (api.job(default["id"]).expires_at - api.job(default["id"]).created_at).days == 30
    assert short["expires_at"] is not None and short["cost"] == 0.0
    with api.sessions.begin() as s:  # `genqueue keys update bob --retention-days 3`: its new jobs, unless they say
        update_limits(s, api.key_ids["bob"], retention_days=3)
    keyed = api.job(api.create("bob", body("key's"))["id"])
    own = api.job(api.create("bob", {**body("own"), "retention_days": 0})["id"])
    assert (keyed.expires_at - keyed.created_at).days == 3 and own.expires_at == own.created_at
    bad = api.client.post("/v1/jobs", json={**body(), "retention_days": -1}, headers=api.auth("alice"))
    assert bad.status_code == 422 and "retention_days" in bad.json()["error"]["fields"][0]["field"]

    queued = api.client.delete(f"/v1/jobs/{short['id']}/outputs", headers=api.auth("alice"))
    assert queued.status_code == 409 and queued.json()["error"]["code"] == "not_terminal"
    api.set_job(short["id"], status="canceled", finished_at=utcnow())
    assert api.client.delete(f"/v1/jobs/{short['id']}/outputs", headers=api.auth("bob")).status_code == 404
    assert api.client.delete(f"/v1/jobs/{short['id']}/outputs", headers=api.auth("ops")).status_code == 403
    mine = api.client.delete(f"/v1/jobs/{short['id']}/outputs", headers=api.auth("alice"))
    assert mine.status_code == 200, mine.text
    assert mine.json()["outputs_deleted_at"] is not None and mine.json()["input"] == {}
    assert api.job(short["id"]).input_sealed is None
    assert api.job(default["id"]).input_public["prompt"] == "default"


def test_erasure_deletes_that_jobs_bytes_only_and_its_outputs_then_answer_410(api: Api) -> None:
    jobs = [api.create("alice", body(f"img {i}"))["id"] for i in range(2)]
    for job_id in jobs:
        key = f"jobs/{job_id}/0.png"
        api.storage.put(key, b"\x89PNG fake " + job_id.encode(), "image/png")
        with api.sessions.begin() as s:
            s.add(JobOutput(job_id=job_id, index=0, content_type="image/png", size=9, sha256="0" * 64,
                            storage_key=key, storage_uri=f"file:///data/{key}"))
        api.set_job(job_id, status="succeeded", finished_at=utcnow(), predict_time=2.0)
    erased = api.client.delete(f"/v1/jobs/{jobs[0]}/outputs", headers=api.auth("admin"))  # admin: any job
    assert erased.status_code == 200, erased.text
    assert erased.json()["outputs"][0]["sha256"] == "0" * 64  # the record stays; the bytes do not
    assert sorted(api.storage.objects) == [f"jobs/{jobs[1]}/0.png"]
    gone = api.client.get(f"/v1/jobs/{jobs[0]}/outputs/0", headers=api.auth("alice"))
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "output_deleted"
    assert api.client.get(f"/v1/jobs/{jobs[1]}/outputs/0", headers=api.auth("alice")).status_code == 200
    # Cost in the job JSON: 2 s at the default GENQUEUE_PRICE_PER_SECOND (0.0014), whatever was deleted.
    assert api.client.get(f"/v1/jobs/{jobs[0]}", headers=api.auth("alice")).json()["cost"] == pytest.approx(0.0028)


def test_a_jobs_cost_counts_every_attempt_it_was_billed_for(api: Api) -> None:
    """Each attempt was a prediction of its own: the job's cost is their billed seconds (an aborted one
    never ran) at the model's price, in the job JSON and in the stats alike (the default price here)."""
    from sqlalchemy import insert

    from genqueue.models.tables import JobAttempt

    job_id = api.create("alice", body("retried"))["id"]
    api.set_job(job_id, status="succeeded", predict_time=3.0, attempt=3, finished_at=utcnow())
    with api.sessions.begin() as s:
        s.execute(insert(JobAttempt), [
            {"job_id": job_id, "attempt": 1, "status": "failed", "prediction_status": "failed",
             "metrics": {"predict_time": 2.0}, "error_code": "prediction_failed"},
            {"job_id": job_id, "attempt": 2, "status": "failed", "prediction_status": "aborted",
             "metrics": {"predict_time": 5.0}, "error_code": "deadline_exceeded"},
        ])
    price = api.app.state.settings.price_per_second
    job = api.client.get(f"/v1/jobs/{job_id}", headers=api.auth("alice")).json()
    assert job["cost"] == pytest.approx((3.0 + 2.0) * price)
    stats = api.client.get("/v1/stats?window=all", headers=api.auth("ops")).json()
    assert stats["cost"]["estimated_spend"] == pytest.approx((3.0 + 2.0) * price)
