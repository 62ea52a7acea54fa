"""Scheduling over HTTP: priority in and out, the max_queued 429, the stats' scheduling section."""

from __future__ import annotations

from api_helpers import Api, body

from genqueue.models.keys import update_limits


def test_priority_is_stored_shown_and_filtered(api: Api) -> None:
    low = api.create("alice", {**body("low")})
    high = api.create("alice", {**body("high"), "priority": 9})
    assert (low["priority"], high["priority"]) == (5, 9)
    page = api.client.get("/v1/jobs?priority=9", headers=api.auth("alice")).json()["jobs"]
    assert [j["id"] for j in page] == [high["id"]]
    # The urgent job goes first: it is next in line, the older normal one second.
    assert api.client.get(f"/v1/jobs/{high['id']}", headers=api.auth("alice")).json()["queue_position"] == 0
    assert api.client.get(f"/v1/jobs/{low['id']}", headers=api.auth("alice")).json()["queue_position"] == 1
    bad = api.client.get("/v1/jobs?priority=10", headers=api.auth("alice"))
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"].endswith("priority")


def test_a_key_over_max_queued_gets_429_and_keeps_its_jobs(api: Api) -> None:
    with api.sessions.begin() as s:
        assert update_limits(s, api.key_ids["bob"], max_queued=2) is not None
    first = [api.create("bob", body(f"q{i}"))["id"] for i in range(2)]
    over = api.client.post("/v1/jobs", json=body("one too many"), headers=api.auth("bob"))
    assert over.status_code == 429, over.text
    err = over.json()["error"]
    assert err["code"] == "quota_exceeded" and "2" in err["message"]
    assert err["fields"][0]["field"] == "max_queued"
    batch = api.client.post("/v1/jobs/batch", json={"jobs": [body("b1"), body("b2")]}, headers=api.auth("bob"))
    assert batch.status_code == 429  # all or nothing: none of the batch is taken
    assert api.count_jobs() == 2 and api.queued == first  # nothing lost, nothing half-accepted
    assert api.create("alice", body("other key"))["status"] == "queued"  # another key is not limited


def test_stats_show_queue_depth_by_priority_and_key(api: Api) -> None:
    api.create("alice", {**body("a"), "priority": 9})
    api.create("bob", body("b"))
    api.create("bob", body("c"))
    sched = api.client.get("/v1/stats", headers=api.auth("ops")).json()["scheduling"]
    assert sched["queued_by_priority"] == {"9": 1, "5": 2}
    assert sched["queued_by_key"] == {api.key_ids["bob"]: 2, api.key_ids["alice"]: 1}
    assert sched["create_budget_per_min"] == 600
