"""Reading, listing (keyset pagination, filters), visibility by key, cancel."""

from __future__ import annotations

from datetime import UTC, datetime

from api_helpers import Api, body

from genqueue.models.keys import revoke_key


def test_list_walks_cursors_newest_first(api: Api) -> None:
    ids = [api.create("alice", body(f"p{i}"))["id"] for i in range(7)]
    other = api.create("alice", {"model": "acme/other", "input": {"x": 1}})["id"]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 3, "model": "jigsawstack/image-generation"}
        if cursor:
            params["cursor"] = cursor
        resp = api.client.get("/v1/jobs", params=params, headers=api.auth("alice"))
        assert resp.status_code == 200, resp.text
        page = resp.json()
        assert len(page["jobs"]) <= 3
        seen += [j["id"] for j in page["jobs"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(ids))  # newest first, each once

    # A batch's jobs are created a microsecond apart (intake): newest first is the batch reversed,
    # and pages neither skip nor repeat.
    batch = api.client.post("/v1/jobs/batch", json={"jobs": [body(f"b{i}") for i in range(5)]},
                            headers=api.auth("bob")).json()["jobs"]
    walked: list[str] = []
    cursor = None
    while True:
        page = api.client.get("/v1/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                              headers=api.auth("bob")).json()
        walked += [j["id"] for j in page["jobs"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert walked == [j["id"] for j in reversed(batch)]

    everything = api.client.get("/v1/jobs", headers=api.auth("alice")).json()
    assert [j["id"] for j in everything["jobs"]] == [other, *reversed(ids)]
    assert everything["next_cursor"] is None

    api.set_job(ids[2], status="failed", error_code="prediction_failed", error_message="boom",
                finished_at=datetime.now(UTC))
    failed = api.client.get("/v1/jobs", params={"status": "failed"}, headers=api.auth("alice")).json()
    assert [j["id"] for j in failed["jobs"]] == [ids[2]]
    assert failed["jobs"][0]["error"] == {"code": "prediction_failed", "message": "boom"}

    for params, field in (({"cursor": "not-a-cursor"}, "cursor"), ({"status": "done"}, "status"),
                          ({"limit": 0}, "limit"), ({"limit": 201}, "limit")):
        resp = api.client.get("/v1/jobs", params=params, headers=api.auth("alice"))
        assert resp.status_code == 422, params
        assert [f["field"] for f in resp.json()["error"]["fields"]] == [field]


def test_keys_roles_and_visibility(api: Api) -> None:
    resp = api.client.get("/v1/jobs")
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert resp.json()["error"]["code"] == "unauthorized"
    bad = api.client.get("/v1/jobs", headers={"Authorization": "Bearer gq_nope"})
    assert bad.status_code == 401 and bad.headers["WWW-Authenticate"] == "Bearer"
    assert api.client.get("/v1/jobs", headers={"Authorization": "Basic abc"}).status_code == 401

    mine = api.create("alice")["id"]
    theirs = api.create("bob")["id"]
    # A submit key sees only its own jobs; another's job looks missing.
    assert api.client.get(f"/v1/jobs/{theirs}", headers=api.auth("alice")).status_code == 404
    assert api.client.post(f"/v1/jobs/{theirs}/cancel", headers=api.auth("alice")).status_code == 404
    listed = api.client.get("/v1/jobs", headers=api.auth("alice")).json()
    assert [j["id"] for j in listed["jobs"]] == [mine]
    missing = api.client.get("/v1/jobs/" + "0" * 32, headers=api.auth("alice"))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"

    # ops reads everything but cannot create or cancel.
    assert api.client.get(f"/v1/jobs/{theirs}", headers=api.auth("ops")).status_code == 200
    assert len(api.client.get("/v1/jobs", headers=api.auth("ops")).json()["jobs"]) == 2
    forbidden = api.client.post("/v1/jobs", json=body(), headers=api.auth("ops"))
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"
    assert api.client.post(f"/v1/jobs/{mine}/cancel", headers=api.auth("ops")).status_code == 403

    # admin does everything.
    assert api.client.post("/v1/jobs", json=body(), headers=api.auth("admin")).status_code == 202
    assert api.client.post(f"/v1/jobs/{mine}/cancel", headers=api.auth("admin")).status_code == 200

    with api.sessions.begin() as s:
        assert revoke_key(s, api.key_ids["alice"])
    revoked = api.client.get(f"/v1/jobs/{mine}", headers=api.auth("alice"))
    assert revoked.status_code == 401 and revoked.headers["WWW-Authenticate"] == "Bearer"


def test_cancel_queued_running_and_terminal(api: Api) -> None:
    queued = api.create()["id"]
    resp = api.client.post(f"/v1/jobs/{queued}/cancel", headers=api.auth("alice"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "canceled" and resp.json()["finished_at"]
    row = api.job(queued)
    assert row.status == "canceled" and row.finished_at is not None and row.error_code is None
    assert api.enqueuer.canceled == []

    running = api.create()["id"]
    api.set_job(running, status="running", prediction_id="pred123", prediction_status="processing")
    resp = api.client.post(f"/v1/jobs/{running}/cancel", headers=api.auth("alice"))
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "running" and resp.json()["cancel_requested"] is True
    assert api.enqueuer.canceled == [running]
    first_request = api.job(running).cancel_requested_at
    assert first_request is not None
    again = api.client.post(f"/v1/jobs/{running}/cancel", headers=api.auth("alice"))
    assert again.status_code == 202
    assert api.job(running).cancel_requested_at == first_request
    assert api.enqueuer.canceled == [running, running]

    submitting = api.create()["id"]
    api.set_job(submitting, status="submitting")
    assert api.client.post(f"/v1/jobs/{submitting}/cancel", headers=api.auth("alice")).status_code == 202

    for status in ("succeeded", "failed", "canceled", "storing"):
        job_id = api.create()["id"]
        api.set_job(job_id, status=status)
        resp = api.client.post(f"/v1/jobs/{job_id}/cancel", headers=api.auth("alice"))
        assert resp.status_code == 409, status
        assert resp.json()["error"]["code"] == "not_cancelable"
        assert api.job(job_id).cancel_requested_at is None
    assert api.enqueuer.canceled == [running, running, submitting]
