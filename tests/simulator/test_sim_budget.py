"""The simulator as a low-credit account (the `low_credit` preset) and the budget headers the
Replicate client reports from it: what the worker's limiter learns from."""

from __future__ import annotations

import argparse

import httpx
import pytest
from sim_helpers import AUTH, GOOD_INPUT, REF, TOKEN, MakeSim, create

from genqueue.simulator.cli_args import add_arguments, config_from_args
from genqueue.simulator.server import SimHandle
from genqueue.worker.replicate import RateLimitHeaders, ReplicateClient, TransientError, make_http_client


def test_low_credit_preset_at_runtime_and_429s_counted_by_kind(sim: SimHandle) -> None:
    r = httpx.post(f"{sim.base_url}/_sim/config", json={"preset": "low_credit"})
    assert r.status_code == 200, r.text
    cfg = r.json()
    assert (cfg["create_limit_per_min"], cfg["create_burst"], cfg["read_limit_per_min"]) == (6.0, 1.0, 3000.0)
    with httpx.Client(base_url=sim.base_url, headers=AUTH) as c:
        first, second = create(c), create(c)
        assert first.status_code == 201
        # ratelimit-remaining: whole requests left; ratelimit-reset: seconds until the bucket is full.
        assert (first.headers["ratelimit-remaining"], first.headers["ratelimit-reset"]) == ("0", "10")
        assert second.status_code == 429 and 9 <= int(second.headers["retry-after"]) <= 10
        assert second.headers["ratelimit-remaining"] == "0" and "ratelimit-reset" in second.headers
        assert c.get("/v1/predictions").status_code == 200  # reads keep the documented 3000/min
    stats = httpx.get(f"{sim.base_url}/_sim/stats").json()
    assert stats["throttled_429_by_kind"] == {"create": 1, "read": 0}
    assert stats["throttled_rate_limit_by_kind"] == {"create": 1, "read": 0}
    # A preset's knobs can be overridden in the same update; an unknown preset is refused by name.
    cfg = httpx.post(f"{sim.base_url}/_sim/config", json={"preset": "normal", "create_burst": 5}).json()
    assert (cfg["create_limit_per_min"], cfg["create_burst"]) == (600.0, 5.0)
    bad = httpx.post(f"{sim.base_url}/_sim/config", json={"preset": "rich"})
    assert bad.status_code == 400 and "preset" in bad.text and "low_credit" in bad.text
    assert httpx.get(f"{sim.base_url}/_sim/config").json()["create_burst"] == 5.0  # nothing changed


def test_preset_on_the_command_line() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(["--preset", "low_credit"]))
    assert (cfg.create_limit_per_min, cfg.create_burst) == (6.0, 1.0)
    cfg = config_from_args(parser.parse_args(["--preset", "low_credit", "--create-limit-per-min", "12"]))
    assert (cfg.create_limit_per_min, cfg.create_burst) == (12.0, 1.0)


def test_client_reports_every_answers_budget_headers(make_sim: MakeSim) -> None:
    sim = make_sim(create_limit_per_min=6.0, create_burst=1.0)
    seen: list[RateLimitHeaders] = []
    http = make_http_client(base_url=f"{sim.base_url}/v1", token=TOKEN)
    client = ReplicateClient(http, f"{sim.base_url}/v1", on_rate_headers=seen.append)
    p = client.create(input=GOOD_INPUT, version=REF)
    client.get(p.urls_get or "")
    with pytest.raises(TransientError) as info:
        client.create(input=GOOD_INPUT, version=REF)
    assert info.value.status_code == 429
    assert [(h.endpoint, h.status, h.remaining, h.reset) for h in seen] == [
        ("create", 201, "0", "10"), ("get", 200, "2999", "1"), ("create", 429, "0", seen[2].reset)]

    def broken(headers: RateLimitHeaders) -> None:
        raise RuntimeError("redis down")

    assert ReplicateClient(http, f"{sim.base_url}/v1", on_rate_headers=broken).list().results is not None
    http.close()
