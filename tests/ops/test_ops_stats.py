"""models.stats / stats_report on SQLite and PostgreSQL, and /v1/stats over HTTP: exact figures for seeded jobs."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from ops_app import Ops
from ops_helpers import EXPECTED_BILLED, EXPECTED_COUNTS, EXPECTED_PREDICT, PAINTER, PRICE, SKETCHER, STUCK_AFTER
from sqlalchemy import select

from genqueue.models.stats import Filters, summary
from genqueue.models.stats_report import filters_for, parse_window, report
from genqueue.models.tables import Job


def _report(ops: Ops, f: Filters | None = None) -> dict:
    with ops.sessions() as s:
        return report(s, f or Filters(), price_per_second=PRICE, create_rate_per_min=600, stuck_after=STUCK_AFTER,
                      now=ops.seeded.now)


def test_counts_and_live_state(ops: Ops) -> None:
    r = _report(ops)
    assert r["status_counts"] == EXPECTED_COUNTS
    assert r["total"] == 15
    assert r["in_flight"] == {"submitting": 1, "starting": 1, "processing": 1, "storing": 1, "total": 4}
    assert r["queue"]["depth"] == 2
    assert r["queue"]["oldest_age_seconds"] == pytest.approx(600.0, abs=1e-3)
    assert r["stuck"]["count"] == 1
    assert r["stuck"]["job_ids"] == ops.seeded.ids["processing"]


def test_percentiles_exact(ops: Ops) -> None:
    phases = _report(ops)["latency"]["phases"]
    for k, v in EXPECTED_PREDICT.items():
        assert phases["predict_time"][k] == pytest.approx(v), k
    # queue_time: 0.1..0.5 (succeeded) + 0.2 + 0.3 * 3 -> n=9, sorted [.1 .2 .2 .3 .3 .3 .3 .4 .5]
    assert phases["queue_time"]["count"] == 9
    assert phases["queue_time"]["p50"] == pytest.approx(0.3)
    assert phases["queue_time"]["p95"] == pytest.approx(0.4 + 0.6 * 0.1)


def test_series_failures_models_cost(ops: Ops) -> None:
    r = _report(ops)
    tp = r["throughput"]
    assert tp["totals"] == {"succeeded": 5, "failed": 3, "canceled": 1}
    assert sum(p["succeeded"] for p in tp["series"]) == 5
    assert r["creates"]["total"] == 12  # 9 finished + 2 running + 1 storing
    with ops.sessions() as s:
        minutes = Counter(int(t.timestamp()) // 60 for t in s.scalars(select(Job.submitted_at)) if t is not None)
    assert r["creates"]["peak_per_min"] == max(minutes.values())
    assert sum(p["count"] for p in r["creates"]["series"]) == 12
    assert r["creates"]["limit_per_min"] == 600
    assert any(p["predict_time"] is not None for p in r["latency"]["series"])
    assert r["failures"][0] == {"error_code": "prediction_failed", "count": 2, "latest_message": "boom new",
                                "latest_at": r["failures"][0]["latest_at"]}
    assert r["failures"][1]["error_code"] == "prediction_aborted"
    models = {m["model"]: m for m in r["models"]}
    assert models[PAINTER]["total"] == 12 and models[SKETCHER]["total"] == 3
    assert models[PAINTER]["p50_predict_time"] == pytest.approx(2.5)  # [1 2 2 3 4 10]
    assert models[SKETCHER]["p50_predict_time"] == pytest.approx(1.0)  # [0.5 1.5]
    c = r["cost"]
    assert c["billed_seconds"] == pytest.approx(EXPECTED_BILLED)
    assert c["estimated_spend"] == pytest.approx(EXPECTED_BILLED * PRICE)
    by_model = {m["model"]: m["billed_seconds"] for m in c["by_model"]}
    assert by_model == {PAINTER: pytest.approx(22.0), SKETCHER: pytest.approx(1.5)}
    by_key = {k["api_key_id"]: k["billed_seconds"] for k in c["by_api_key"]}
    assert by_key[ops.key_ids["alice"]] == pytest.approx(20.0)
    assert by_key[ops.key_ids["bob"]] == pytest.approx(3.5)
    assert c["canceled"] == {"count": 1, "billed_seconds": 2.0, "spend": round(2.0 * PRICE, 6)}
    assert c["aborted"]["count"] == 1 and c["aborted"]["spend"] == 0.0


def test_filters_model_and_window(ops: Ops) -> None:
    r = _report(ops, Filters(model=SKETCHER))
    assert r["total"] == 3 and r["queue"]["depth"] == 0
    now = ops.seeded.now
    # jobs created in the last 10 minutes: q1 (600 s ago is excluded by < ?) -> use 11 minutes
    r = _report(ops, filters_for(window="11m", since=None, until=None, model=None, api_key_id=None, now=now))
    assert r["status_counts"]["queued"] == 2 and r["status_counts"]["running"] == 2
    assert r["status_counts"]["succeeded"] == 0
    assert r["window"]["bucket_seconds"] == 60
    assert len(r["throughput"]["series"]) in (11, 12)
    assert parse_window("all") is None and parse_window("90s") == timedelta(seconds=90)
    with pytest.raises(ValueError):
        parse_window("yesterday")


def test_http_stats_auth_and_body(ops: Ops) -> None:
    c = ops.client
    assert c.get("/v1/stats").status_code == 401
    assert c.get("/v1/stats", headers=ops.auth("alice")).status_code == 403
    assert c.get("/v1/stats", headers=ops.auth("admin")).status_code == 200
    resp = c.get("/v1/stats", params={"window": "1h"}, headers=ops.auth("ops"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status_counts"] == EXPECTED_COUNTS
    assert body["cost"]["billed_seconds"] == pytest.approx(EXPECTED_BILLED)
    bad = c.get("/v1/stats", params={"window": "soon"}, headers=ops.auth("ops"))
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "window"
    since = (ops.seeded.now - timedelta(minutes=11)).isoformat()
    r = c.get("/v1/stats", params={"since": since, "model": PAINTER}, headers=ops.auth("ops")).json()
    assert r["total"] == 6  # 2 queued, 1 submitting, 2 running, 1 storing
    r = c.get("/v1/stats", params={"window": "all", "api_key_id": ops.key_ids["bob"]}, headers=ops.auth("ops")).json()
    assert r["total"] == 4


def test_demo_summary_matches_http_stats(ops: Ops) -> None:
    """The demo's summary and /v1/stats agree for the same jobs."""
    with ops.sessions() as s:
        demo = summary(s, Filters())
    body = ops.client.get("/v1/stats", params={"window": "all"}, headers=ops.auth("ops")).json()
    assert {k: v for k, v in body["status_counts"].items() if v} == demo["status_counts"]
    assert body["latency"]["phases"] == demo["timings"]
