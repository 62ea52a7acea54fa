"""Job metadata: each limit is a 422 naming the field, tags are stored and returned, and they filter
`GET /v1/jobs` and `/v1/stats` (JSONB containment on PostgreSQL, json_extract on SQLite)."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import Api, body

from genqueue.intake.metadata import MAX_KEY_CHARS, MAX_KEYS, MAX_VALUE_CHARS, metadata_filters, metadata_problems


def _fields(resp: Any) -> list[str]:
    return [f["field"] for f in resp.json()["error"]["fields"]]


@pytest.mark.parametrize(("metadata", "field", "reason"), [
    ({f"k{i}": "v" for i in range(MAX_KEYS + 1)}, "metadata", "must have at most 16 keys"),
    ({"k" * (MAX_KEY_CHARS + 1): "v"}, "metadata", "keys must be at most 64 characters"),
    ({"team": "x" * (MAX_VALUE_CHARS + 1)}, "metadata.team", "must be at most 512 characters"),
    ({"team": 7}, "metadata.team", "must be a string"),
    ({"team": "a\x00b"}, "metadata.team", "must not contain NUL characters"),
    ({"": "v"}, "metadata", "keys must not be empty"),
])
def test_each_metadata_limit_is_a_422_naming_the_field(sqlite_api: Api, metadata: dict[str, Any], field: str,
                                                       reason: str) -> None:
    resp = sqlite_api.client.post("/v1/jobs", json={**body(), "metadata": metadata}, headers=sqlite_api.auth("alice"))
    assert resp.status_code == 422, resp.text
    assert {"field": field, "reason": reason} in resp.json()["error"]["fields"]
    assert sqlite_api.count_jobs() == 0


def test_metadata_not_an_object_is_422(sqlite_api: Api) -> None:
    resp = sqlite_api.client.post("/v1/jobs", json={**body(), "metadata": ["a"]}, headers=sqlite_api.auth("alice"))
    assert resp.status_code == 422 and _fields(resp) == ["metadata"], resp.text


def test_limits_at_the_edge_are_accepted(sqlite_api: Api) -> None:
    tags = {f"k{i:02d}" + "x" * (MAX_KEY_CHARS - 3): "v" * MAX_VALUE_CHARS for i in range(MAX_KEYS)}
    job = sqlite_api.create(payload={**body(), "metadata": tags})
    assert job["metadata"] == tags


def test_metadata_stored_returned_and_filtered(api: Api) -> None:
    a = api.create(payload={**body("a"), "metadata": {"team": "red", "run": "1"}})
    b = api.create(payload={**body("b"), "metadata": {"team": "blue", "run": "1"}})
    c = api.create(payload={**body("c"), "metadata": {"team": "red", "run": "2", "odd \"key\"": "q'v"}})
    plain = api.create()
    assert a["metadata"] == {"team": "red", "run": "1"} and plain["metadata"] == {}
    assert api.client.get(f"/v1/jobs/{c['id']}", headers=api.auth("alice")).json()["metadata"] == {
        "team": "red", "run": "2", "odd \"key\"": "q'v"}

    def listed(query: str, key: str = "alice") -> set[str]:
        resp = api.client.get(f"/v1/jobs?{query}", headers=api.auth(key))
        assert resp.status_code == 200, resp.text
        return {j["id"] for j in resp.json()["jobs"]}

    assert listed("metadata.team=red") == {a["id"], c["id"]}
    assert listed("metadata.team=red&metadata.run=1") == {a["id"]}
    assert listed("metadata.run=1") == {a["id"], b["id"]}
    assert listed("metadata.team=green") == set()
    assert listed("metadata.odd%20%22key%22=q%27v") == {c["id"]}
    assert listed("metadata.team=red", key="bob") == set()  # still scoped to the key
    assert listed("metadata.team=red", key="ops") == {a["id"], c["id"]}

    stats = api.client.get("/v1/stats?window=all&metadata.team=red", headers=api.auth("ops"))
    assert stats.status_code == 200, stats.text
    assert stats.json()["status_counts"]["queued"] == 2
    everything = api.client.get("/v1/stats?window=all", headers=api.auth("ops")).json()
    assert everything["status_counts"]["queued"] == 4


@pytest.mark.parametrize(("query", "field"), [
    ("metadata.team=" + "x" * (MAX_VALUE_CHARS + 1), "metadata.team"),
    ("metadata." + "k" * (MAX_KEY_CHARS + 1) + "=v", "metadata"),
    ("metadata.team=a&metadata.team=b", "metadata.team"),
])
def test_bad_metadata_filters_are_422_naming_the_parameter(sqlite_api: Api, query: str, field: str) -> None:
    for path, key in (("/v1/jobs", "alice"), ("/v1/stats", "ops")):
        resp = sqlite_api.client.get(f"{path}?{query}", headers=sqlite_api.auth(key))
        assert resp.status_code == 422, resp.text
        assert field in _fields(resp)


def test_pure_checks() -> None:
    assert metadata_problems(None) == [] and metadata_problems({"a": "b"}) == []
    assert metadata_filters([("status", "x"), ("metadata.a", "b")]) == {"a": "b"}
    with pytest.raises(ValueError):
        metadata_filters([("metadata.a", "\x00")])


def test_postgresql_answers_metadata_filters_from_the_gin_index(make_api: Any, pg_url: str) -> None:
    """The filter is one `@>` containment the GIN index (jsonb_path_ops) can answer."""
    from sqlalchemy import select, text

    from genqueue.models.metafilter import MetadataMatches
    from genqueue.models.tables import Job

    api = make_api(pg_url)
    api.create(payload={**body(), "metadata": {"team": "red"}})
    stmt = select(Job.id).where(MetadataMatches(Job.meta, {"team": "red", "run": "1"}))
    with api.sessions() as s:
        sql = str(stmt.compile(s.get_bind(), compile_kwargs={"literal_binds": True}))
        assert "@>" in sql and "json_each" not in sql
        s.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(r[0] for r in s.connection().exec_driver_sql("EXPLAIN " + sql))
    assert "ix_jobs_meta" in plan, plan
