"""Replay (`POST /v1/jobs/{id}/retry`) and bulk actions (`POST /v1/jobs/bulk`) through the real app,
on SQLite and PostgreSQL, with real Redis lanes (the worker side is the recording enqueuer)."""

from __future__ import annotations

import time
from typing import Any

from api_helpers import Api, MakeApi, body
from sqlalchemy import select, update

from genqueue.models.tables import CallbackDelivery, Job, JobAttempt


def _failed(api: Api, name: str = "alice", n: int = 1, **values: Any) -> list[str]:
    resp = api.client.post("/v1/jobs/batch", json={"jobs": [body(f"p{i}") for i in range(n)]}, headers=api.auth(name))
    assert resp.status_code == 202, resp.text
    ids = [j["id"] for j in resp.json()["jobs"]]
    with api.sessions.begin() as s:
        s.execute(update(Job).where(Job.id.in_(ids)).values(**{
            "status": "failed", "error_code": "prediction_failed", "error_message": "boom",
            "prediction_id": "pred_old", "prediction_status": "failed", "predict_time": 1.5, **values}))
    return ids


def _lanes_clear(api: Api) -> None:
    api.app.state.redis.flushdb()


def test_replay_of_a_failed_job_queues_a_new_attempt_and_lists_both(api: Api) -> None:
    (job_id,) = _failed(api)
    _lanes_clear(api)
    resp = api.client.post(f"/v1/jobs/{job_id}/retry", headers=api.auth("alice"))
    assert resp.status_code == 202, resp.text
    view = resp.json()
    assert view["status"] == "queued" and view["attempt"] == 2 and view["error"] is None
    first, current = view["attempt_history"]
    assert first["attempt"] == 1 and first["status"] == "failed" and first["prediction_id"] == "pred_old"
    assert first["error"] == {"code": "prediction_failed", "message": "boom"}
    assert first["metrics"]["predict_time"] == 1.5
    assert current["attempt"] == 2 and current["status"] == "queued" and current["prediction_id"] is None
    assert api.queued == [job_id]  # back in its lane for the dispatcher
    job = api.job(job_id)
    assert job.prediction_id is None and job.deadline_at is not None and job.deadline_at > job.updated_at
    # The job is active now: a second replay is refused, and so is one of a succeeded job.
    again = api.client.post(f"/v1/jobs/{job_id}/retry", headers=api.auth("alice"))
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_retryable"
    api.set_job(job_id, status="succeeded")
    assert api.client.post(f"/v1/jobs/{job_id}/retry", headers=api.auth("alice")).status_code == 409


def test_replay_is_scoped_and_refuses_deleted_secrets_naming_the_fields(api: Api) -> None:
    (job_id,) = _failed(api)
    assert api.client.post(f"/v1/jobs/{job_id}/retry", headers=api.auth("bob")).status_code == 404
    api.set_job(job_id, input_sealed=None)  # the replay window passed: the sweeper deleted the secrets
    resp = api.client.post(f"/v1/jobs/{job_id}/retry", headers=api.auth("alice"))
    assert resp.status_code == 409, resp.text
    err = resp.json()["error"]
    assert err["code"] == "secrets_deleted" and "api_key" in err["message"]
    assert [f["field"] for f in err["fields"]] == ["input.api_key"]
    assert api.job(job_id).status == "failed"  # nothing changed


def test_bulk_dry_run_counts_within_the_callers_scope(api: Api) -> None:
    _failed(api, "alice", 3)
    _failed(api, "bob", 2)
    def dry(name: str, **flt: Any) -> int:
        resp = api.client.post("/v1/jobs/bulk", json={"action": "retry", "filter": flt, "dry_run": True},
                               headers=api.auth(name))
        assert resp.status_code == 200, resp.text
        assert resp.json()["id"] is None
        return int(resp.json()["matched"])
    assert dry("alice") == 3 and dry("bob") == 2 and dry("admin") == 5
    assert dry("admin", error_code="prediction_failed") == 5 and dry("admin", error_code="other") == 0
    assert dry("alice", status="canceled") == 0
    assert api.job(_failed(api, "alice")[0]).status == "failed"  # a dry run changes nothing


def test_bulk_refuses_a_status_the_action_cannot_apply_to(api: Api) -> None:
    resp = api.client.post("/v1/jobs/bulk", json={"action": "retry", "filter": {"status": "running"}},
                           headers=api.auth("alice"))
    assert resp.status_code == 422 and "filter.status" in resp.text
    resp = api.client.post("/v1/jobs/bulk", json={"action": "explode"}, headers=api.auth("alice"))
    assert resp.status_code == 422 and "action" in resp.text


def test_bulk_retry_skips_jobs_whose_secrets_are_gone_and_reports_progress(api: Api) -> None:
    ids = _failed(api, "alice", 5)
    api.set_job(ids[0], input_sealed=None)
    _lanes_clear(api)
    resp = api.client.post("/v1/jobs/bulk", json={"action": "retry", "filter": {}}, headers=api.auth("alice"))
    assert resp.status_code == 202, resp.text
    bulk_id = resp.json()["id"]
    assert resp.json()["matched"] == 5
    progress = api.client.get(f"/v1/jobs/bulk/{bulk_id}", headers=api.auth("alice")).json()
    assert progress["state"] == "done" and progress["done"] == 4 and progress["skipped_secrets_deleted"] == 1
    assert sorted(api.queued) == sorted(ids[1:])
    assert api.client.get(f"/v1/jobs/bulk/{bulk_id}", headers=api.auth("bob")).status_code == 404


def test_bulk_cancel_cancels_queued_and_marks_running_with_a_cancel_message(api: Api) -> None:
    queued = [api.create("alice")["id"] for _ in range(3)]
    for job_id in queued:
        api.set_job(job_id, callback_url="https://hooks.example.com/x")
    running = [api.create("alice")["id"] for _ in range(2)]
    for job_id in running:
        api.set_job(job_id, status="running", prediction_id=f"pred_{job_id}")
    other = api.create("bob")["id"]
    resp = api.client.post("/v1/jobs/bulk", json={"action": "cancel", "filter": {}}, headers=api.auth("alice"))
    assert resp.status_code == 202 and resp.json()["matched"] == 5
    for job_id in queued:
        job = api.job(job_id)
        assert job.status == "canceled" and job.finished_at is not None
    for job_id in running:
        assert api.job(job_id).cancel_requested_at is not None
    assert sorted(j for step, j in api.enqueuer.sent if step == "cancel") == sorted(running)
    lanes = set(api.queued)  # (the "running" ones were moved by SQL here, so they are still listed)
    assert not lanes & set(queued) and other in lanes  # the canceled left their lanes; bob's job is untouched
    assert api.job(other).status == "queued"
    with api.sessions() as s:
        hooks = s.scalars(select(CallbackDelivery.job_id).where(CallbackDelivery.event == "terminal")).all()
    assert sorted(hooks) == sorted(queued)


def test_bulk_retry_of_1000_failed_jobs_enqueues_over_1000_per_second(make_api: MakeApi, pg_url: str) -> None:
    api = make_api(pg_url)
    ids = _failed(api, "alice", 1000)
    _lanes_clear(api)
    started = time.perf_counter()
    resp = api.client.post("/v1/jobs/bulk", json={"action": "retry", "filter": {"status": "failed"}},
                           headers=api.auth("alice"))
    elapsed = time.perf_counter() - started  # the TestClient returns after the background run
    assert resp.status_code == 202, resp.text
    rate = 1000 / elapsed
    print(f"bulk retry of 1000 failed jobs: {elapsed:.3f}s, {rate:.0f} jobs/s")
    assert len(api.queued) == 1000 and rate >= 1000
    with api.sessions() as s:
        assert s.scalar(select(Job.status).where(Job.id == ids[0])) == "queued"
        assert len(s.scalars(select(JobAttempt.job_id)).all()) == 1000


def test_bulk_filter_strings_no_row_can_hold_are_422_naming_the_field(api: Api) -> None:
    for flt, field in (({"model": "a\u0000b"}, "model"), ({"metadata": {"k": "v\u0000"}}, "filter.metadata.k"),
                       ({"created_before": "2026-12-07T02:00:00"}, "created_before")):
        resp = api.client.post("/v1/jobs/bulk", json={"action": "retry", "filter": flt}, headers=api.auth("alice"))
        assert resp.status_code == 422, resp.text
        assert any(field in f["field"] for f in resp.json()["error"]["fields"]), resp.text


def test_replay_refuses_a_job_whose_prediction_may_still_run(api: Api) -> None:
    # Failed by a poisoned poll while its prediction was processing: a new attempt could run beside it.
    (job_id,) = _failed(api, prediction_status="processing", error_code="too_many_deliveries")
    resp = api.client.post(f"/v1/jobs/{job_id}/retry", headers=api.auth("alice"))
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "prediction_active", resp.text
    bulk_id = api.client.post("/v1/jobs/bulk", json={"action": "retry"}, headers=api.auth("alice")).json()["id"]
    progress = api.client.get(f"/v1/jobs/bulk/{bulk_id}", headers=api.auth("alice")).json()
    assert (progress["matched"], progress["done"], progress["skipped"]) == (1, 0, 1)
    assert api.job(job_id).status == "failed"
