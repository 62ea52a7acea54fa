"""The fast submit path: rows written by Core/COPY, views built without a read-back, one pooled
connection per request (autocommit on PostgreSQL), the rate limit as one Redis script."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

import pytest
from api_helpers import SECRET, VERSION, Api, body
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from genqueue.api.ratelimit import RateLimiter
from genqueue.core.crypto import decrypt_secrets
from genqueue.intake.service import _COLUMNS, Intake, insert_rows
from genqueue.models.jobs import QUEUED_AUDIT
from genqueue.models.keys import find_active_key, revoke_key
from genqueue.models.tables import Job

MakeApi = Callable[..., Api]  # the conftest fixture's type (not imported: `conftest` is ambiguous across dirs)


def _engine(api: Api) -> Engine:
    return cast(Engine, api.app.state.session_factory.kw["bind"])


def _intake(api: Api) -> Intake:
    return cast(Intake, api.app.state.intake)


def _rows(api: Api, ids: list[str]) -> dict[str, Any]:
    with api.sessions() as s:
        return {r.id: r for r in s.execute(select(Job.__table__).where(Job.id.in_(ids)))}


def test_batch_answer_equals_what_is_read_back(api: Api) -> None:
    jobs = [body(f"prompt {i}", steps=4, aspect_ratio="1:1") for i in range(25)]
    jobs.append({"model": "acme/other", "input": {"text": "free-form", "nested": {"a": [1, 2.5, None]}},
                 "deadline_seconds": 60})
    resp = api.client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=api.auth("alice"))
    assert resp.status_code == 202, resp.text
    answered = resp.json()["jobs"]
    ids = [j["id"] for j in answered]
    assert api.queued == ids and len(set(ids)) == len(jobs)
    estimates = ("queue_position", "estimated_start_at")  # a read adds the scheduler's estimates

    def stored(job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if k not in estimates}

    for position, job in enumerate(answered):
        got = api.client.get(f"/v1/jobs/{job['id']}", headers=api.auth("alice"))
        assert got.status_code == 200 and stored(got.json()) == stored(job)
        assert got.json()["queue_position"] == position  # the batch's order is the dispatch order
    listed = api.client.get("/v1/jobs?limit=200", headers=api.auth("alice")).json()["jobs"]
    assert sorted(map(stored, listed), key=lambda j: j["id"]) == sorted(map(stored, answered), key=lambda j: j["id"])


def test_batch_rows_have_every_column_intake_owns(api: Api) -> None:
    """The COPY (PostgreSQL) and executemany (SQLite) rows match what the ORM used to write."""
    resp = api.client.post("/v1/jobs/batch", json={"jobs": [body(f"p{i}", steps=3) for i in range(30)]},
                           headers={**api.auth("bob"), "Idempotency-Key": "batch-cols"})
    assert resp.status_code == 202, resp.text
    ids = [j["id"] for j in resp.json()["jobs"]]
    rows = _rows(api, ids)
    cipher = _intake(api)._cipher
    for i, job_id in enumerate(ids):
        row = rows[job_id]
        assert row.status == "queued" and row.target == "version" and row.version == VERSION
        assert row.input_public == {"prompt": f"p{i}", "steps": 3}
        assert row.secret_names == ["api_key"]
        assert SECRET not in str(tuple(row))
        assert decrypt_secrets(cipher, row.input_sealed) == {"api_key": SECRET}
        assert row.api_key_id == api.key_ids["bob"]
        assert row.idempotency_key == f"batch-cols#{i}" and row.request_hash and len(row.request_hash) == 64
        assert (row.polls, row.attempts, row.deliveries) == (0, 0, 0)
        assert row.created_at == row.updated_at and row.priority == 5
        assert row.next_check_at == row.created_at + QUEUED_AUDIT  # the lane audit's time (sweep)
        assert (row.deadline_at - row.created_at).total_seconds() == 3600
        assert row.created_at.tzinfo is not None
        assert row.prediction_id is None and row.finished_at is None and row.cancel_requested_at is None
    # request_hash is only computed (and stored) when an Idempotency-Key is given.
    plain = api.client.post("/v1/jobs", json=body(), headers=api.auth("bob")).json()
    assert _rows(api, [plain["id"]])[plain["id"]].request_hash is None


@pytest.mark.parametrize("n", [1, 2, 40])
def test_insert_is_all_or_nothing_and_duplicates_raise_integrity_error(api: Api, n: int) -> None:
    """One statement on PostgreSQL (INSERT or COPY), so a duplicate idempotency key anywhere in a batch
    leaves no row behind, also on an autocommit connection like the API's."""
    intake = _intake(api)
    first, _ = intake.submit([_req(i) for i in range(n)], api_key_id=api.key_ids["alice"],
                             idempotency_key="dup", batch=True)
    engine = _engine(api)
    rows = [intake._row(_req(i), api.key_ids["alice"], f"new#{i}", "0" * 64, first[0].created_at)
            for i in range(n)]
    rows[-1]["idempotency_key"] = "dup#0"  # collides with the first submit's first row
    options = {"isolation_level": "AUTOCOMMIT"} if engine.dialect.name == "postgresql" else {}
    with engine.connect() as conn, pytest.raises(IntegrityError):
        conn = conn.execution_options(**options)
        insert_rows(conn, rows)
        conn.commit()
    assert not _rows(api, [r["id"] for r in rows])
    assert api.count_jobs() == n


def test_submit_outside_the_api_uses_its_own_session(api: Api) -> None:
    jobs, created = _intake(api).submit([_req(i) for i in range(3)], batch=True)
    assert created and [j.status for j in jobs] == ["queued"] * 3
    assert set(_rows(api, [j.id for j in jobs])) == {j.id for j in jobs}
    assert _engine(api).pool.checkedout() == 0


def test_a_request_returns_its_connection(api: Api) -> None:
    c, auth = api.client, api.auth("alice")
    job = api.create()
    for resp in (c.get(f"/v1/jobs/{job['id']}", headers=auth), c.get("/v1/jobs", headers=auth),
                 c.post("/v1/jobs", json=body(), headers=auth),
                 c.post("/v1/jobs", json=body(), headers={**auth, "Idempotency-Key": "k"}),
                 c.post("/v1/jobs", json=body(), headers={**auth, "Idempotency-Key": "k"}),
                 c.post("/v1/jobs", json=body(steps=0), headers=auth),
                 c.get("/v1/jobs/nope", headers=auth),
                 c.post("/v1/jobs", json=body(), headers=api.auth("ops")),
                 c.post("/v1/jobs", json=body(), headers={"Authorization": "Bearer gq_wrong"})):
        assert resp.status_code in (200, 202, 401, 403, 404, 422), resp.text
        assert _engine(api).pool.checkedout() == 0, resp.request.url


def test_auth_comes_before_body_validation(api: Api) -> None:
    bad = {"version": VERSION, "input": {}}
    assert api.client.post("/v1/jobs", json=bad).status_code == 401
    assert api.client.post("/v1/jobs", json=bad, headers={"Authorization": "Bearer gq_x"}).status_code == 401
    assert api.client.post("/v1/jobs/batch", json={"jobs": []},
                           headers={"Authorization": "Bearer gq_x"}).status_code == 401
    assert api.client.post("/v1/jobs", json=bad, headers=api.auth("ops")).status_code == 403
    assert api.client.post("/v1/jobs", json=bad, headers=api.auth("alice")).status_code == 422


def test_find_active_key_ignores_revoked_and_unknown_keys(api: Api) -> None:
    with api.sessions() as s:
        key = find_active_key(s, api.keys["alice"])
        assert key is not None and (key.id, key.name, key.role) == (api.key_ids["alice"], "alice", "submit")
        assert find_active_key(s, api.keys["alice"] + "x") is None
    with api.sessions.begin() as s:
        assert revoke_key(s, api.key_ids["alice"])
    with api.sessions() as s:
        assert find_active_key(s, api.keys["alice"]) is None
    assert api.client.post("/v1/jobs", json=body(), headers=api.auth("alice")).status_code == 401


def test_rate_limit_script_counts_and_expires_the_window(make_api: MakeApi, sqlite_url: str) -> None:
    api = make_api(sqlite_url)
    client = api.app.state.redis
    limiter = RateLimiter(client, 2, prefix="t:rate", clock=lambda: 1_800_000_010.0)
    assert [limiter.hit("k1") for _ in range(3)] == [None, None, 50]
    assert limiter.hit("k2") is None
    key = f"t:rate:k1:{1_800_000_010 // 60}"
    assert int(client.get(key)) == 3
    assert 0 < client.ttl(key) <= 61
    client.script_flush()  # a Redis restart forgets scripts: the next hit loads it again
    assert limiter.hit("k1") == 50 and int(client.get(key)) == 4


def _req(i: int) -> Any:
    from genqueue.intake import JobRequest

    return JobRequest.model_validate({"version": VERSION, "input": {"prompt": f"p{i}", "api_key": SECRET,
                                                                   "extra": json.loads('{"k": [1, "two"]}')}})


def test_columns_cover_every_non_nullable_column() -> None:
    table = Job.__table__
    required = {c.name for c in table.columns if not c.nullable}
    assert required <= set(_COLUMNS)
