"""Wire-level behaviour checked with plain httpx: bodies, headers, lifecycle, retention."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime

import httpx
import pytest
from sim_helpers import AUTH, GOOD_INPUT, REF, VERSION, MakeSim, create

from genqueue.simulator.png import check_png
from genqueue.simulator.server import SimHandle


def wait_terminal(c: httpx.Client, url: str, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = c.get(url).json()
        if body["status"] in ("succeeded", "failed", "canceled", "aborted"):
            return body
        time.sleep(0.02)
    raise AssertionError("prediction never finished")


@pytest.mark.parametrize(
    ("inp", "fields"),
    [
        ({"api_key": "k"}, [{"type": "required", "field": "input", "description": "prompt is required"}]),
        ({**GOOD_INPUT, "aspect_ratio": "7:3"}, [{"type": "enum", "field": "input.aspect_ratio"}]),
        ({**GOOD_INPUT, "steps": 0}, [{"type": "number_gte", "field": "input.steps",
                                       "description": "Must be greater than or equal to 1"}]),
        ({**GOOD_INPUT, "width": 4000}, [{"type": "number_lte", "field": "input.width"}]),
        ({**GOOD_INPUT, "steps": "many"}, [{"type": "invalid_type", "field": "input.steps"}]),
        ({**GOOD_INPUT, "prompt": ""}, [{"type": "string_gte", "field": "input.prompt"}]),
    ],
)
def test_input_validation_422(client: httpx.Client, inp: dict, fields: list[dict]) -> None:
    r = create(client, inp)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["title"] == "Input validation failed" and body["status"] == 422
    assert len(body["invalid_fields"]) == len(fields)
    for got, want in zip(body["invalid_fields"], fields, strict=True):
        assert want.items() <= got.items()
        assert f"- {got['field']}: {got['description']}\n" in body["detail"]


def test_missing_prompt_exact_body(client: httpx.Client) -> None:
    r = create(client, {"api_key": "k", "unknown_key": 1})
    assert r.json() == {
        "title": "Input validation failed", "detail": "- input: prompt is required\n", "status": 422,
        "invalid_fields": [{"type": "required", "field": "input", "description": "prompt is required"}],
    }


def test_unauthenticated(client: httpx.Client, sim: SimHandle) -> None:
    for headers in ({}, {"Authorization": "Bearer r8_nope"}):
        r = httpx.get(f"{sim.base_url}/v1/predictions", headers=headers)
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json() == {"title": "Unauthenticated",
                            "detail": "You did not pass a valid authentication token", "status": 401}
        assert "ratelimit-remaining" in r.headers and "ratelimit-reset" in r.headers


def test_any_token_when_tokens_empty(make_sim: MakeSim) -> None:
    sim = make_sim(tokens=set())
    r = httpx.get(f"{sim.base_url}/v1/predictions", headers={"Authorization": "Bearer whatever"})
    assert r.status_code == 200


def test_unknown_version(client: httpx.Client) -> None:
    for version in ("a" * 64, "jigsawstack/image-generation:latest", "owner/name:" + "b" * 64):
        r = client.post("/v1/predictions", json={"version": version, "input": GOOD_INPUT})
        assert r.status_code == 422
        assert r.json() == {
            "title": "Invalid version or not permitted",
            "detail": "The specified version does not exist "
            "(or perhaps you don't have permission to use it?)",
            "status": 422,
        }


def test_accept_any_version(make_sim: MakeSim) -> None:
    sim = make_sim(accept_any_version=True)
    r = httpx.post(f"{sim.base_url}/v1/predictions", headers=AUTH,
                   json={"version": "acme/thing:" + "c" * 64, "input": {"anything": [1, 2]}})
    assert r.status_code == 201 and r.json()["model"] == "acme/thing"


def test_prediction_object_shape(client: httpx.Client, sim: SimHandle) -> None:
    r = create(client)
    assert r.status_code == 201
    assert "ratelimit-remaining" in r.headers and "ratelimit-reset" in r.headers
    body = r.json()
    assert body["status"] == "starting" and "started_at" not in body
    for key in ("id", "model", "version", "input", "output", "data_removed", "error", "status", "created_at",
                "urls", "logs"):
        assert key in body
    assert body["input"] == GOOD_INPUT and body["version"] == VERSION
    assert body["created_at"].endswith("Z") and len(body["created_at"].split(".")[1]) == 7
    assert body["urls"]["get"] == f"{sim.base_url}/v1/predictions/{body['id']}"
    assert body["urls"]["cancel"] == f"{sim.base_url}/v1/predictions/{body['id']}/cancel"
    final = wait_terminal(client, body["urls"]["get"])
    assert final["status"] == "succeeded" and final["error"] is None
    t = {k: datetime.fromisoformat(final[k]) for k in ("created_at", "started_at", "completed_at")}
    done = t["completed_at"]
    assert final["metrics"]["predict_time"] == pytest.approx((done - t["started_at"]).total_seconds())
    assert final["metrics"]["total_time"] == pytest.approx((done - t["created_at"]).total_seconds())
    f = client.get(final["output"])
    assert f.status_code == 200 and f.headers["content-type"] == "image/png"
    assert int(f.headers["content-length"]) == len(f.content)
    assert check_png(f.content) == (64, 36)


def test_png_differs_per_prediction(client: httpx.Client, sim: SimHandle) -> None:
    urls = [create(client, {**GOOD_INPUT, "aspect_ratio": "9:16"}).json()["urls"]["get"] for _ in range(2)]
    outs = [wait_terminal(client, u)["output"] for u in urls]
    pngs = [client.get(o).content for o in outs]
    assert pngs[0] != pngs[1] and all(check_png(p) == (36, 64) for p in pngs)
    recs = {p["id"]: p for p in httpx.get(f"{sim.base_url}/_sim/predictions").json()["predictions"]}
    for url, png in zip(urls, pngs, strict=True):
        assert recs[url.rsplit("/", 1)[1]]["files"][0]["sha256"] == hashlib.sha256(png).hexdigest()


def test_output_list_mode(make_sim: MakeSim) -> None:
    sim = make_sim(output_mode="list")
    r = httpx.post(f"{sim.base_url}/v1/predictions", headers=AUTH, json={"version": REF, "input": GOOD_INPUT})
    with httpx.Client(headers=AUTH) as c:
        final = wait_terminal(c, r.json()["urls"]["get"])
        assert len(final["output"]) == 2
        assert all(check_png(c.get(u).content) for u in final["output"])


def test_prefer_wait(make_sim: MakeSim) -> None:
    sim = make_sim(start_delay=0.05, predict_seconds=0.3)
    with httpx.Client(base_url=sim.base_url, headers=AUTH) as c:
        r = create(c, headers={"Prefer": "wait=5"})
        assert r.status_code == 201 and r.headers["preference-applied"] == "wait=5"
        assert r.json()["status"] == "succeeded" and r.json()["output"]
        slow = make_sim(start_delay=0.05, predict_seconds=10)
        t0 = time.monotonic()
        r2 = create(httpx.Client(base_url=slow.base_url, headers=AUTH), headers={"Prefer": "wait=1"})
        assert 0.9 < time.monotonic() - t0 < 3
        assert r2.json()["status"] == "processing" and r2.headers["preference-applied"] == "wait=1"


def test_cancel_after_aborts_before_start(make_sim: MakeSim) -> None:
    sim = make_sim(start_delay=1.0, predict_seconds=1.0, min_cancel_after=0.1)
    with httpx.Client(base_url=sim.base_url, headers=AUTH) as c:
        r = create(c, headers={"Cancel-After": "0.2s"})
        assert "deadline" in r.json()
        final = wait_terminal(c, r.json()["urls"]["get"])
        assert final["status"] == "aborted" and "started_at" not in final
        created, deadline = (datetime.fromisoformat(final[k]) for k in ("created_at", "deadline"))
        assert (deadline - created).total_seconds() == pytest.approx(0.2, abs=1e-3)
        r2 = create(c, headers={"Cancel-After": "0.3"})
        sim.config.update({"start_delay": 0.0})
        r3 = create(c, headers={"Cancel-After": "0.3"})
        assert wait_terminal(c, r3.json()["urls"]["get"])["status"] == "canceled"
        assert wait_terminal(c, r2.json()["urls"]["get"])["status"] == "aborted"
        assert create(c, headers={"Cancel-After": "soon"}).status_code == 400


def test_cancel_after_minimum_enforced(client: httpx.Client) -> None:
    body = create(client, headers={"Cancel-After": "1s"}).json()
    created, deadline = (datetime.fromisoformat(body[k]) for k in ("created_at", "deadline"))
    assert (deadline - created).total_seconds() == pytest.approx(5.0)


def test_retention_expiry(make_sim: MakeSim) -> None:
    sim = make_sim(retention_seconds=0.3)
    with httpx.Client(base_url=sim.base_url, headers=AUTH) as c:
        final = wait_terminal(c, create(c).json()["urls"]["get"])
        assert final["data_removed"] is False and c.get(final["output"]).status_code == 200
        time.sleep(0.35)
        gone = c.get(final["urls"]["get"]).json()
        assert gone["data_removed"] is True and gone["output"] is None and gone["input"] == {}
        assert gone["status"] == "succeeded" and gone["metrics"]["predict_time"] > 0
        assert c.get(final["output"]).status_code == 404


def test_fail_rate(make_sim: MakeSim) -> None:
    sim = make_sim(fail_rate=1.0)
    with httpx.Client(base_url=sim.base_url, headers=AUTH) as c:
        final = wait_terminal(c, create(c).json()["urls"]["get"])
        assert final["status"] == "failed" and isinstance(final["error"], str) and final["output"] is None


def test_max_run_seconds(make_sim: MakeSim) -> None:
    sim = make_sim(predict_seconds=5.0, max_run_seconds=0.1)
    with httpx.Client(base_url=sim.base_url, headers=AUTH) as c:
        final = wait_terminal(c, create(c).json()["urls"]["get"])
        assert final["status"] == "failed" and "timed out" in final["error"]
        assert final["metrics"]["predict_time"] == pytest.approx(0.1)


def test_list_filters(client: httpx.Client) -> None:
    first = create(client).json()
    time.sleep(0.01)
    second = create(client).json()
    page = client.get("/v1/predictions", params={"created_after": first["created_at"]}).json()
    assert [p["id"] for p in page["results"]] == [second["id"]]
    page = client.get("/v1/predictions", params={"created_before": second["created_at"]}).json()
    assert [p["id"] for p in page["results"]] == [first["id"]]
    assert client.get("/v1/predictions", params={"created_after": "yesterday"}).status_code == 400


def test_versions_secret_and_404(client: httpx.Client) -> None:
    v = client.get(f"/v1/models/jigsawstack/image-generation/versions/{VERSION}").json()
    assert v["id"] == VERSION and "Input" in v["openapi_schema"]["components"]["schemas"]
    assert "created_at" in v and "cog_version" in v
    assert client.get("/v1/webhooks/default/secret").json()["key"].startswith("whsec_")
    r = client.get("/v1/predictions/doesnotexist")
    assert r.status_code == 404 and r.json() == {"detail": "The requested resource could not be found.",
                                                 "status": 404}
    assert r.headers["content-type"] == "application/problem+json"


def test_public_base_url(make_sim: MakeSim) -> None:
    sim = make_sim(public_base_url="https://sim.example/")
    r = httpx.post(f"{sim.base_url}/v1/predictions", headers=AUTH, json={"version": REF, "input": GOOD_INPUT})
    assert r.json()["urls"]["get"].startswith("https://sim.example/v1/predictions/")


def test_admin_records_hide_secrets_and_count_duplicates(client: httpx.Client, sim: SimHandle) -> None:
    create(client)
    create(client)
    create(client, {**GOOD_INPUT, "prompt": "other"})
    data = httpx.get(f"{sim.base_url}/_sim/predictions").json()
    assert data["count"] == 3 and data["duplicate_groups"] == 1
    assert sorted(p["duplicates"] for p in data["predictions"]) == [1, 2, 2]
    assert "sk_secret_value" not in httpx.get(f"{sim.base_url}/_sim/predictions").text
    stats = httpx.get(f"{sim.base_url}/_sim/stats").json()
    assert stats["creates"] == 3 and stats["requests"]["POST /v1/predictions"]["201"] == 3
    assert httpx.post(f"{sim.base_url}/_sim/reset").status_code == 200
    assert httpx.get(f"{sim.base_url}/_sim/predictions").json()["count"] == 0
