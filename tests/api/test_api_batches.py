"""Batches over the real app (SQLite and PostgreSQL, real Redis; the broker is a recording fake):
NDJSON and JSON bodies, per-line errors with line numbers, all_or_nothing, results in input order,
cancel, list, scoping to the key, the body cap of this route, and the batch turning terminal."""

from __future__ import annotations

import json
from typing import Any

from api_helpers import SECRET, Api, MakeApi, body
from sqlalchemy import func, select

from genqueue.models import batches
from genqueue.models.base import utcnow
from genqueue.models.tables import Batch, BatchError, Job

NDJSON = {"Content-Type": "application/x-ndjson"}


def _ndjson(rows: list[Any]) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def _post(api: Api, data: bytes, key: str = "alice", query: str = "") -> Any:
    return api.client.post(f"/v1/batches{query}", content=data, headers={**api.auth(key), **NDJSON})


def _results(api: Api, batch_id: str, key: str = "alice") -> list[dict[str, Any]]:
    resp = api.client.get(f"/v1/batches/{batch_id}/results", headers=api.auth(key))
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in resp.text.splitlines()]


def _count(api: Api, model: Any) -> int:
    with api.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_ndjson_bad_lines_are_reported_by_number_and_the_others_accepted(api: Api) -> None:
    data = _ndjson([body("one"), b"{not json", body("three", steps=500), b"   ", body("five"), [1, 2],
                    {"version": body()["version"], "input": {"api_key": SECRET}}])
    resp = _post(api, data)
    assert resp.status_code == 202, resp.text
    got = resp.json()
    assert SECRET not in resp.text
    assert (got["lines"], got["counts"]["total"], got["counts"]["rejected"]) == (6, 2, 4)
    assert got["status"] == "processing" and got["counts"]["queued"] == 2 and got["progress"] == 0
    assert [(e["line"], e["field"], e["reason"]) for e in got["errors"]] == [
        (2, "line", "is not valid JSON"),
        (3, "input.steps", "must be between 1 and 90"),
        (6, "line", "must be a JSON object (one job request)"),
        (7, "input.prompt", "is required"),
    ]
    results = _results(api, got["id"])
    assert [(r["line"], r["status"]) for r in results] == [
        (1, "queued"), (2, "rejected"), (3, "rejected"), (5, "queued"), (6, "rejected"), (7, "rejected")]
    assert api.queued == [results[0]["id"], results[3]["id"]]
    assert results[2]["error"]["fields"] == [{"field": "input.steps", "reason": "must be between 1 and 90"}]
    job = api.client.get(f"/v1/jobs/{results[0]['id']}", headers=api.auth("alice")).json()
    assert job["batch_id"] == got["id"] and job["input"]["prompt"] == "one" and job["input"]["api_key"] == "***"
    assert _count(api, BatchError) == 4


def _can_sign(api: Api, name: str) -> None:
    """Give the key a callback signing secret (a batch callback needs one, like a job's)."""
    from genqueue.models.keys import new_callback_secret
    from genqueue.models.tables import ApiKey

    with api.sessions.begin() as s:
        key = s.get(ApiKey, api.key_ids[name])
        assert key is not None
        _, key.callback_secret_sealed = new_callback_secret(api.app.state.intake._cipher)


def test_a_batch_callback_needs_a_key_that_can_sign(api: Api) -> None:
    resp = api.client.post("/v1/batches", json={"jobs": [body("a")], "callback_url": "https://hooks.example.com/x"},
                           headers=api.auth("bob"))
    assert resp.status_code == 422 and resp.json()["error"]["fields"][0]["field"] == "callback_url"
    private = api.client.post("/v1/batches", json={"jobs": [body("a")], "callback_url": "http://10.0.0.8/x"},
                              headers=api.auth("bob"))
    assert private.status_code == 422 and "private" in private.json()["error"]["fields"][0]["reason"]


def test_json_body_with_options_tags_every_job(api: Api) -> None:
    _can_sign(api, "alice")
    payload = {"jobs": [body("a"), {**body("b"), "metadata": {"run": "7", "own": "x"}}, "nope"],
               "callback_url": "https://hooks.example.com/genqueue?token=abc", "metadata": {"run": "6", "team": "t"}}
    resp = api.client.post("/v1/batches", json=payload, headers=api.auth("alice"))
    assert resp.status_code == 202, resp.text
    got = resp.json()
    assert got["metadata"] == {"run": "6", "team": "t"}
    assert got["callback_url"] == payload["callback_url"]
    assert got["counts"]["total"] == 2 and got["errors"] == [
        {"line": 3, "field": "line", "reason": "must be a JSON object (one job request)"}]
    results = _results(api, got["id"])
    assert [r["metadata"] for r in results[:2]] == [{"run": "6", "team": "t"}, {"run": "7", "own": "x", "team": "t"}]
    listed = api.client.get("/v1/jobs?metadata.team=t", headers=api.auth("alice")).json()["jobs"]
    assert {j["id"] for j in listed} == {results[0]["id"], results[1]["id"]}


def test_all_or_nothing_refuses_the_batch_and_keeps_nothing(api: Api) -> None:
    data = _ndjson([body("ok"), body(""), body("fine"), b"[]"])
    resp = _post(api, data, query="?all_or_nothing=true")
    assert resp.status_code == 422, resp.text
    fields = resp.json()["error"]["fields"]
    assert fields == [{"field": "lines.2.input.prompt", "reason": "must not be empty"},
                      {"field": "lines.4.line", "reason": "must be a JSON object (one job request)"}]
    assert "nothing was accepted" in resp.json()["error"]["message"]
    assert (api.count_jobs(), _count(api, Batch), _count(api, BatchError), api.queued) == (0, 0, 0, [])

    ok = _post(api, _ndjson([body(f"p{i}") for i in range(1, 1501)]), query="?all_or_nothing=true")
    assert ok.status_code == 202, ok.text
    assert ok.json()["counts"]["total"] == 1500 and ok.json()["status"] == "processing"
    assert len(api.queued) == 1500  # enqueued only after the commit
    results = _results(api, ok.json()["id"])
    assert [r["line"] for r in results] == list(range(1, 1501))
    assert api.queued == [r["id"] for r in results]


def test_many_lines_in_chunks_keep_input_order(api: Api) -> None:
    rows: list[Any] = [body(f"p{i}") for i in range(2500)]
    rows[1700] = b"{"
    resp = _post(api, _ndjson(rows))
    assert resp.status_code == 202, resp.text
    assert resp.json()["counts"]["total"] == 2499
    results = _results(api, resp.json()["id"])
    assert [r["line"] for r in results] == list(range(1, 2501))
    assert results[1700]["status"] == "rejected"
    assert len(api.queued) == 2499


def test_batches_are_scoped_to_the_key(api: Api) -> None:
    mine = _post(api, _ndjson([body()])).json()["id"]
    theirs = _post(api, _ndjson([body()]), key="bob").json()["id"]
    for path in (f"/v1/batches/{mine}", f"/v1/batches/{mine}/results"):
        assert api.client.get(path, headers=api.auth("bob")).status_code == 404
        assert api.client.get(path, headers=api.auth("ops")).status_code == 200
    assert api.client.post(f"/v1/batches/{mine}/cancel", headers=api.auth("bob")).status_code == 404
    assert api.client.post(f"/v1/batches/{mine}/cancel", headers=api.auth("ops")).status_code == 403
    listed = api.client.get("/v1/batches", headers=api.auth("bob")).json()
    assert [b["id"] for b in listed["batches"]] == [theirs]
    everyone = api.client.get("/v1/batches?limit=1", headers=api.auth("ops")).json()
    assert len(everyone["batches"]) == 1 and everyone["next_cursor"]
    rest = api.client.get(f"/v1/batches?limit=1&cursor={everyone['next_cursor']}", headers=api.auth("ops")).json()
    assert {everyone["batches"][0]["id"], rest["batches"][0]["id"]} == {mine, theirs}
    assert api.client.get("/v1/batches/nope", headers=api.auth("alice")).status_code == 404


def test_cancel_cancels_queued_marks_running_and_the_batch_finishes(api: Api) -> None:
    got = _post(api, _ndjson([body(f"p{i}") for i in range(5)])).json()
    ids = [r["id"] for r in _results(api, got["id"])]
    api.set_job(ids[0], status="running", prediction_id="p0")
    api.set_job(ids[1], status="succeeded", finished_at=utcnow())
    resp = api.client.post(f"/v1/batches/{got['id']}/cancel", headers=api.auth("alice"))
    assert resp.status_code == 202, resp.text
    view = resp.json()
    assert view["cancel_requested"] and view["status"] == "processing"
    assert view["counts"] | {} == {**view["counts"], "canceled": 3, "running": 1, "succeeded": 1}
    assert ("cancel", ids[0]) in api.enqueuer.sent
    assert api.job(ids[2]).end_to_end_time is not None and api.job(ids[0]).cancel_requested_at is not None
    with api.sessions.begin() as s:
        assert batches.close_finished(s, utcnow()) == []  # one job still running
    api.set_job(ids[0], status="canceled", finished_at=utcnow())
    with api.sessions.begin() as s:
        assert batches.close_finished(s, utcnow()) == [got["id"]]
    with api.sessions.begin() as s:
        assert batches.close_finished(s, utcnow()) == []  # once only
    done = api.client.get(f"/v1/batches/{got['id']}", headers=api.auth("alice")).json()
    assert done["status"] == "canceled" and done["progress"] == 1 and done["finished_at"]
    again = api.client.post(f"/v1/batches/{got['id']}/cancel", headers=api.auth("alice"))
    assert again.status_code == 409, again.text


def test_bad_options_and_bodies_are_4xx_naming_the_field(sqlite_api: Api) -> None:
    api = sqlite_api
    cases = [
        ("?callback_url=ftp://example.com/x", "callback_url"),
        ("?callback_url=https://user:pw@example.com/x", "callback_url"),
        ("?callback_url=https://", "callback_url"),
        ("?metadata.team=" + "x" * 513, "metadata.team"),
        ("?all_or_nothing=maybe", "all_or_nothing"),
    ]
    for query, field in cases:
        resp = _post(api, _ndjson([body()]), query=query)
        assert resp.status_code == 422, (query, resp.text)
        assert field in [f["field"] for f in resp.json()["error"]["fields"]], (query, resp.text)
    plain = api.client.post("/v1/batches", content=b"x", headers={**api.auth("alice"), "Content-Type": "text/plain"})
    assert plain.status_code == 415 and plain.json()["error"]["fields"][0]["field"] == "Content-Type"
    empty = _post(api, b"\n\n")
    assert empty.status_code == 422 and empty.json()["error"]["fields"][0]["field"] == "jobs"
    for payload, field in (({"jobs": []}, "jobs"), ({"jobs": [body()], "extra": 1}, "extra"),
                           ({"jobs": [body()], "metadata": {"a": 1}}, "metadata.a")):
        resp = api.client.post("/v1/batches", json=payload, headers=api.auth("alice"))
        assert resp.status_code == 422 and field in [f["field"] for f in resp.json()["error"]["fields"]], resp.text
    bad_json = api.client.post("/v1/batches", content=b"{", headers={**api.auth("alice"),
                                                                     "Content-Type": "application/json"})
    assert bad_json.status_code == 400
    assert api.client.post("/v1/batches", content=b"", headers=NDJSON).status_code == 401
    assert api.client.post("/v1/batches", content=_ndjson([body()]),
                           headers={**api.auth("ops"), **NDJSON}).status_code == 403
    assert api.count_jobs() == 0


def test_the_route_has_its_own_body_cap_and_keeps_what_came_before(make_api: MakeApi, sqlite_url: str) -> None:
    api = make_api(sqlite_url, GENQUEUE_MAX_BATCH_BYTES=str(200_000), GENQUEUE_MAX_BODY_BYTES=str(64_000))
    line = _ndjson([body("x" * 100)])
    n = 200_000 // len(line) + 50
    # Larger than the general cap: allowed here; each line on its own stays under its cap.
    ok = _post(api, line * (64_000 // len(line) + 10))
    assert ok.status_code == 202, ok.text
    big = api.client.post("/v1/batches", content=iter([line * n]), headers={**api.auth("alice"), **NDJSON})
    assert big.status_code == 413, big.text
    assert "accepted in batch" in big.json()["error"]["message"]
    # A declared length over the cap is refused before reading.
    declared = _post(api, line * n)
    assert declared.status_code == 413
    # An input over its cap (a sixteenth of the body cap) is refused naming `input`; a line over the
    # line cap (input cap + 64 KiB) is skipped to its end without being held, naming `line`.
    huge = _post(api, _ndjson([body("y" * 5000), {"model": "a/b", "input": {"p": "z" * 80_000}}, body()]))
    assert huge.status_code == 202, huge.text
    assert [(e["line"], e["field"]) for e in huge.json()["errors"]] == [(1, "input"), (2, "line")]
    assert huge.json()["counts"]["total"] == 1
    # The general cap still applies to a JSON batch.
    as_json = api.client.post("/v1/batches", json={"jobs": [body("x" * 100)] * 400}, headers=api.auth("alice"))
    assert as_json.status_code == 413


def test_jobs_of_a_batch_are_counted_from_the_index(api: Api) -> None:
    got = _post(api, _ndjson([body(f"p{i}") for i in range(3)])).json()
    with api.sessions() as s:
        assert batches.counts(s, [got["id"]]) == {got["id"]: {"queued": 3}}
        assert s.scalar(select(func.count()).where(Job.batch_id == got["id"])) == 3


def test_lines_after_a_cancel_of_a_batch_still_arriving_are_not_accepted(api: Api) -> None:
    from genqueue.intake.batches import BatchWriter

    writer = BatchWriter(api.app.state.intake, api_key_id=api.key_ids["alice"], chunk=2)
    try:
        writer.add([(1, json.dumps(body("a")).encode()), (2, json.dumps(body("b")).encode())])
        assert writer.batch_id is not None
        status = api.client.get(f"/v1/batches/{writer.batch_id}", headers=api.auth("alice")).json()["status"]
        assert status == "accepting"
        canceled = api.client.post(f"/v1/batches/{writer.batch_id}/cancel", headers=api.auth("alice"))
        assert canceled.status_code == 202 and canceled.json()["counts"]["canceled"] == 2, canceled.text
        writer.add([(3, json.dumps(body("c")).encode()), (4, b"{")])
        outcome = writer.finish()
    finally:
        writer.close()
    assert (outcome.accepted, outcome.rejected) == (2, 2)
    results = _results(api, outcome.id)
    assert [(r["line"], r["status"]) for r in results] == [(1, "canceled"), (2, "canceled"), (3, "rejected"),
                                                           (4, "rejected")]
    assert results[2]["error"]["fields"][0]["reason"] == "was not accepted: the batch was canceled"
    final = api.client.get(f"/v1/batches/{outcome.id}", headers=api.auth("alice")).json()
    assert final["status"] == "canceled"


def test_a_batch_whose_body_stopped_arriving_is_sealed_by_the_sweep_and_finishes(api: Api) -> None:
    from datetime import timedelta

    from genqueue.intake.batches import BatchWriter

    writer = BatchWriter(api.app.state.intake, api_key_id=api.key_ids["alice"], chunk=2)
    writer.add([(1, json.dumps(body("a")).encode()), (2, b"{"), (3, json.dumps(body("c")).encode())])
    batch_id = writer.batch_id
    writer.close()  # the API process died: never finished
    assert batch_id is not None
    with api.sessions.begin() as s:
        assert batches.close_finished(s, utcnow()) == []  # still within the idle window
    ids = [r["id"] for r in _results(api, batch_id) if r["id"]]
    for job_id in ids:
        api.set_job(job_id, status="succeeded", finished_at=utcnow())
    with api.sessions.begin() as s:
        assert batches.close_finished(s, utcnow() + timedelta(minutes=11)) == [batch_id]
    view = api.client.get(f"/v1/batches/{batch_id}", headers=api.auth("alice")).json()
    assert view["status"] == "completed" and view["truncated"] and view["lines"] == 2
    assert view["counts"]["total"] == 1 and view["counts"]["rejected"] == 1


def test_lines_over_the_keys_max_queued_are_refused_naming_the_limit(api: Api) -> None:
    from genqueue.models.keys import update_limits

    with api.sessions.begin() as s:
        assert update_limits(s, api.key_ids["alice"], max_queued=3) is not None
    api.create()  # one already queued: room for two more
    got = _post(api, _ndjson([body(f"p{i}") for i in range(4)])).json()
    assert got["counts"]["total"] == 2 and got["counts"]["rejected"] == 2
    assert [(e["line"], e["field"]) for e in got["errors"]] == [(3, "line"), (4, "line")]
    assert "max_queued" in got["errors"][0]["reason"]
    atomic = _post(api, _ndjson([body("x")]), query="?all_or_nothing=true")
    assert atomic.status_code == 422 and "max_queued" in atomic.json()["error"]["fields"][0]["reason"], atomic.text
    assert api.count_jobs() == 3
