"""Creating jobs: masking and sealing, field-named validation errors, idempotency, batches."""

from __future__ import annotations

from typing import Any

from api_helpers import HEX, JIGSAW, SECRET, VERSION, Api, body, no_secret
from sqlalchemy import select

from genqueue.models.tables import Job


def test_create_masks_secret_and_seals_it(api: Api) -> None:
    resp = api.client.post("/v1/jobs", json=body(aspect_ratio="16:9", steps=4), headers=api.auth("alice"))
    assert resp.status_code == 202, resp.text
    job = resp.json()
    assert job["status"] == "queued"
    assert job["input"] == {"prompt": "a lighthouse at dusk", "aspect_ratio": "16:9", "steps": 4, "api_key": "***"}
    assert job["version"] == VERSION and job["model"] == JIGSAW and job["deployment"] is None
    assert job["outputs"] == [] and job["error"] is None and job["cancel_requested"] is False
    assert set(job["metrics"]) == {"predict_time", "total_time", "queue_time", "start_time", "detection_lag",
                                   "storage_time", "end_to_end_time"}
    assert job["created_at"].endswith("Z") and job["deadline_at"].endswith("Z")
    assert "Idempotent-Replayed" not in resp.headers
    assert no_secret(resp.text)
    assert api.queued == [job["id"]]

    with api.sessions() as s:
        row = s.execute(select(Job.__table__).where(Job.id == job["id"])).one()
    assert all(SECRET not in str(value) for value in row)
    assert row.input_sealed and row.secret_names == ["api_key"]

    got = api.client.get(f"/v1/jobs/{job['id']}", headers=api.auth("alice"))
    assert got.status_code == 200
    read = got.json()
    # A read adds the scheduler's estimates: first in line, to start about now.
    assert read.pop("queue_position") == 0 and read.pop("estimated_start_at").endswith("Z")
    assert read == {k: v for k, v in job.items() if k not in ("queue_position", "estimated_start_at")}
    assert no_secret(got.text)


BAD_INPUTS: list[tuple[dict[str, Any], str]] = [
    ({"version": VERSION, "input": {"api_key": SECRET}}, "input.prompt"),
    (body("x" * 5001), "input.prompt"),
    (body(aspect_ratio="7:3"), "input.aspect_ratio"),
    (body(steps=0), "input.steps"),
    (body(steps=91), "input.steps"),
    (body(output_format="gif"), "input.output_format"),
    ({"version": VERSION, "input": {"prompt": "a cat"}}, "input.api_key"),
    ({"model": JIGSAW, "deployment": "acme/flux", "input": {"prompt": "p", "api_key": SECRET}}, "version"),
    ({"version": "jigsawstack/image-generation:latest", "input": {"api_key": SECRET}}, "version"),
    ({**body(), "priority": 10}, "priority"),
    ({**body(), "priority": -1}, "priority"),
    ({**body(), "priority": "high"}, "priority"),
    ({**body(), "priority": 5.5}, "priority"),
    ({**body(), "priorty": 5}, "priorty"),  # an unknown field is refused, not ignored
    ({"version": VERSION}, "input"),
    ({**body(), "deadline_seconds": 1}, "deadline_seconds"),
    ({"model": "Not A Model", "input": {"api_key": SECRET}}, "model"),
]


def test_every_validation_error_names_the_field(api: Api) -> None:
    for payload, field in BAD_INPUTS:
        resp = api.client.post("/v1/jobs", json=payload, headers=api.auth("alice"))
        assert resp.status_code == 422, (payload, resp.text)
        err = resp.json()["error"]
        assert err["code"] == "validation_error"
        assert field in [f["field"] for f in err["fields"]], (field, err)
        assert all(f["reason"] for f in err["fields"])
        assert no_secret(resp.text), resp.text
    assert api.count_jobs() == 0
    assert api.queued == []


def test_malformed_json_is_a_clear_400(api: Api) -> None:
    resp = api.client.post("/v1/jobs", content=b'{"version": "x", "input": {"api_key": "' + SECRET.encode(),
                           headers={**api.auth("alice"), "Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_json"
    assert resp.json()["error"]["fields"] == [{"field": "body", "reason": "is not valid JSON"}]
    assert no_secret(resp.text)


def test_idempotency_key_replays_and_conflicts(api: Api) -> None:
    headers = {**api.auth("alice"), "Idempotency-Key": "order-42"}
    first = api.client.post("/v1/jobs", json=body(), headers=headers)
    again = api.client.post("/v1/jobs", json=body(), headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert api.queued == [first.json()["id"]]

    other = api.client.post("/v1/jobs", json=body("another prompt"), headers=headers)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"

    # The same key from another API key is a different request.
    bob = api.client.post("/v1/jobs", json=body("another prompt"),
                          headers={**api.auth("bob"), "Idempotency-Key": "order-42"})
    assert bob.status_code == 202 and bob.json()["id"] != first.json()["id"]

    long = api.client.post("/v1/jobs", json=body(), headers={**api.auth("alice"), "Idempotency-Key": "k" * 201})
    assert long.status_code == 422
    assert long.json()["error"]["fields"][0]["field"] == "Idempotency-Key"
    assert api.count_jobs() == 2


def test_batch_is_all_or_nothing(api: Api) -> None:
    good = [body(f"prompt {i}") for i in range(3)]
    resp = api.client.post("/v1/jobs/batch", json={"jobs": good}, headers=api.auth("alice"))
    assert resp.status_code == 202, resp.text
    jobs = resp.json()["jobs"]
    assert [j["input"]["prompt"] for j in jobs] == ["prompt 0", "prompt 1", "prompt 2"]
    assert api.queued == [j["id"] for j in jobs]
    assert no_secret(resp.text)

    bad = [body("ok"), body("ok"), body("ok"), {"version": VERSION, "input": {"api_key": SECRET}}]
    resp = api.client.post("/v1/jobs/batch", json={"jobs": bad}, headers=api.auth("alice"))
    assert resp.status_code == 422
    assert {"field": "jobs.3.input.prompt", "reason": "is required"} in resp.json()["error"]["fields"]

    shape = [body("ok"), {"model": JIGSAW, "version": HEX, "input": {}}]
    resp = api.client.post("/v1/jobs/batch", json={"jobs": shape}, headers=api.auth("alice"))
    assert resp.status_code == 422
    assert [f["field"] for f in resp.json()["error"]["fields"]] == ["jobs.1.version"]
    assert api.count_jobs() == 3

    too_many = api.client.post("/v1/jobs/batch", json={"jobs": [body()] * 1001}, headers=api.auth("alice"))
    assert too_many.status_code == 422
    assert "jobs" in [f["field"] for f in too_many.json()["error"]["fields"]]
    empty = api.client.post("/v1/jobs/batch", json={"jobs": []}, headers=api.auth("alice"))
    assert empty.status_code == 422
    assert api.count_jobs() == 3
    assert len(api.queued) == 3


def test_batch_idempotency(api: Api) -> None:
    headers = {**api.auth("alice"), "Idempotency-Key": "batch-1"}
    payload = {"jobs": [body("a"), body("b")]}
    first = api.client.post("/v1/jobs/batch", json=payload, headers=headers)
    again = api.client.post("/v1/jobs/batch", json=payload, headers=headers)
    assert [j["id"] for j in again.json()["jobs"]] == [j["id"] for j in first.json()["jobs"]]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert api.count_jobs() == 2
