"""Rate limits and every fault knob, observed from the client side."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from sim_helpers import AUTH, FAST, GOOD_INPUT, MakeSim, create

from genqueue.simulator.app import create_app
from genqueue.simulator.config import SimConfig
from genqueue.simulator.server import SimHandle


def admin(sim: SimHandle, path: str) -> dict:
    return httpx.get(f"{sim.base_url}/_sim/{path}").json()


def set_config(sim: SimHandle, **changes: object) -> dict:
    r = httpx.post(f"{sim.base_url}/_sim/config", json=changes)
    assert r.status_code == 200, r.text
    return r.json()


def test_create_rate_limit(make_sim: MakeSim) -> None:
    sim = make_sim(create_limit_per_min=60, create_burst=3)
    with httpx.Client(base_url=sim.base_url, headers=AUTH) as c:
        codes = [create(c).status_code for _ in range(4)]
        assert codes == [201, 201, 201, 429]
        r = create(c)
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert r.json() == {"detail": "Request was throttled. Expected available in 1 second.",
                            "status": 429, "retry_after": 1}
        assert r.headers["ratelimit-remaining"] == "0"
        assert c.get("/v1/predictions").status_code == 200  # reads have their own bucket
        time.sleep(1.05)
        assert create(c).status_code == 201
    stats = admin(sim, "stats")
    assert stats["throttled_429"] == 2 and stats["creates"] == 4


def test_read_rate_limit_retry_after_seconds(make_sim: MakeSim) -> None:
    sim = make_sim(read_limit_per_min=6, read_burst=1)
    with httpx.Client(base_url=sim.base_url, headers=AUTH) as c:
        assert c.get("/v1/predictions").status_code == 200
        r = c.get("/v1/predictions")
        assert r.status_code == 429 and int(r.headers["retry-after"]) == r.json()["retry_after"] >= 9


def test_fault_drop_raises_in_httpx(sim: SimHandle, client: httpx.Client) -> None:
    set_config(sim, fault_drop=1.0)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client.get("/v1/predictions")
    set_config(sim, fault_drop=0.0)
    assert client.get("/v1/predictions").status_code == 200
    stats = admin(sim, "stats")
    assert stats["dropped_connections"] == 1
    assert stats["requests"]["GET /v1/predictions"] == {"dropped": 1, "200": 1}


def test_fault_429_and_5xx(sim: SimHandle, client: httpx.Client) -> None:
    set_config(sim, fault_429=1.0)
    r = client.get("/v1/predictions")
    assert r.status_code == 429 and r.headers["retry-after"] == "1" and r.json()["retry_after"] == 1
    set_config(sim, fault_429=0.0, fault_5xx=1.0)
    for _ in range(5):
        r = client.get("/v1/predictions")
        assert r.status_code in (500, 503)
        assert "ratelimit-remaining" in r.headers
    set_config(sim, fault_5xx=0.0)
    assert admin(sim, "stats")["throttled_429"] == 1


def test_fault_lost_create_leaves_prediction(sim: SimHandle, client: httpx.Client) -> None:
    set_config(sim, fault_lost_create=1.0, seed=3)
    outcomes = []
    for _ in range(6):
        try:
            outcomes.append(create(client).status_code)
        except (httpx.RemoteProtocolError, httpx.ReadError):
            outcomes.append("dropped")
    assert set(outcomes) == {500, "dropped"}
    records = admin(sim, "predictions")
    assert records["count"] == 6 and records["duplicate_groups"] == 1
    assert admin(sim, "stats")["creates_lost"] == 6


def test_fault_first_download(make_sim: MakeSim) -> None:
    sim = make_sim(fault_first_download=1.0, predict_seconds=0.05)
    with httpx.Client(base_url=sim.base_url, headers=AUTH) as c:
        out = create(c, headers={"Prefer": "wait=5"}).json()["output"]
        first = c.get(out)
        assert first.status_code in (404, 500)
        second = c.get(out)
        assert second.status_code == 200 and second.headers["content-type"] == "image/png"


def test_fault_slow(sim: SimHandle, client: httpx.Client) -> None:
    set_config(sim, fault_slow=1.0, slow_seconds=0.4)
    t0 = time.monotonic()
    assert client.get("/v1/predictions").status_code == 200
    assert time.monotonic() - t0 >= 0.4


def test_seeded_faults_are_deterministic(make_sim: MakeSim) -> None:
    runs = []
    for _ in range(2):
        sim = make_sim(seed=42, fault_5xx=0.5)
        with httpx.Client(base_url=sim.base_url, headers=AUTH) as c:
            runs.append([c.get("/v1/predictions").status_code for _ in range(20)])
    assert runs[0] == runs[1] and len(set(runs[0])) > 1


def test_config_endpoint_rejects_bad_values(sim: SimHandle) -> None:
    assert httpx.post(f"{sim.base_url}/_sim/config", json={"fault_drop": 2}).status_code == 400
    assert httpx.post(f"{sim.base_url}/_sim/config", json={"nope": 1}).status_code == 400
    assert httpx.get(f"{sim.base_url}/_sim/config").json()["fault_drop"] == 0.0


def test_many_in_flight_is_cheap(make_sim: MakeSim) -> None:
    sim = make_sim(start_delay=60, create_limit_per_min=100000)
    store = sim.state.store
    from genqueue.simulator.catalog import KNOWN_VERSIONS
    version = next(iter(KNOWN_VERSIONS.values()))
    t0 = time.monotonic()
    for i in range(10_000):
        store.create(version, {**GOOD_INPUT, "seed": i}, None)
    assert time.monotonic() - t0 < 5
    with httpx.Client(base_url=sim.base_url, headers=AUTH) as c:
        page = c.get("/v1/predictions").json()
        assert len(page["results"]) == 100 and all(p["status"] == "starting" for p in page["results"])


def test_config_endpoint_shows_no_token_or_signing_secret(sim: SimHandle) -> None:
    # /_sim/ must not hand out what authenticates to the simulator or signs its webhooks.
    for resp in (httpx.get(f"{sim.base_url}/_sim/config"),
                 httpx.post(f"{sim.base_url}/_sim/config", json={"fault_drop": 0.0})):
        assert resp.status_code == 200
        assert "r8_sim_fake_token" not in resp.text and "whsec_" not in resp.text
        assert resp.json()["webhook_secret"] == "***"


def test_admin_routes_need_the_admin_token_when_one_is_set(make_sim: MakeSim) -> None:
    sim = make_sim(admin_token="sim_admin_fake_token")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer r8_sim_fake_token"}):
        resp = httpx.get(f"{sim.base_url}/_sim/stats", headers=headers)
        assert resp.status_code == 401 and "admin_token" in resp.json()["detail"], headers
    ok = {"Authorization": "Bearer sim_admin_fake_token"}
    assert httpx.get(f"{sim.base_url}/_sim/stats", headers=ok).status_code == 200
    shown = httpx.get(f"{sim.base_url}/_sim/config", headers=ok).json()
    assert shown["admin_token"] == "***"


def test_without_an_admin_token_admin_routes_answer_loopback_clients_only() -> None:
    """A peer off this machine (here an ASGI client address from TEST-NET-3) gets 401 before its body
    is read; the prediction records, faults and limits stay out of its reach."""
    app = create_app(SimConfig(**FAST))
    reads = 0

    async def call(client: tuple[str, int]) -> int:
        nonlocal reads
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            nonlocal reads
            reads += 1
            return {"type": "http.request", "body": b'{"fault_drop": 1.0}', "more_body": False}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/_sim/config", "raw_path": b"/_sim/config",
                 "query_string": b"", "headers": [(b"content-type", b"application/json")], "client": client,
                 "server": ("127.0.0.1", 5001), "scheme": "http", "http_version": "1.1", "root_path": ""}
        await app(scope, receive, send)  # type: ignore[arg-type]
        return int(sent[0]["status"])  # type: ignore[call-overload]

    assert asyncio.run(call(("203.0.113.7", 40000))) == 401 and reads == 0
    assert asyncio.run(call(("127.0.0.1", 40000))) == 200 and reads == 1
