"""/metrics: Prometheus text that parses, with values from SQL and the shared Redis counters."""

from __future__ import annotations

import pytest
import redis
from ops_app import Ops
from ops_helpers import EXPECTED_COUNTS, EXPECTED_PREDICT
from prometheus_client.parser import text_string_to_metric_families

from genqueue.worker.metrics import Recorder


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _get(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_metrics_values(ops: Ops) -> None:
    # Two "worker processes" (two clients) increment the same shared counters.
    for _ in range(2):
        client = redis.Redis.from_url(ops.settings.redis_url)
        rec = Recorder(client)
        rec.replicate_response("predictions.create", 201)
        rec.replicate_response("predictions.get", 200)
        rec.limiter_wait("create", 0.25)
        rec.flush()  # a worker writes its buffered counts at most once a second
        client.close()
    resp = ops.client.get("/metrics", headers=ops.auth("ops"))
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    s = _samples(resp.text)
    for status, n in EXPECTED_COUNTS.items():
        assert _get(s, "genqueue_jobs", status=status) == n
    assert _get(s, "genqueue_jobs_finished_total", status="failed", error_code="prediction_failed") == 2
    assert _get(s, "genqueue_jobs_finished_total", status="failed", error_code="prediction_aborted") == 1
    assert _get(s, "genqueue_jobs_finished_total", status="succeeded", error_code="") == 5
    assert _get(s, "genqueue_queue_depth") == 2
    assert _get(s, "genqueue_in_flight", phase="starting") == 1
    assert _get(s, "genqueue_in_flight", phase="processing") == 1
    assert _get(s, "genqueue_phase_seconds", phase="predict_time", quantile="0.5") == pytest.approx(
        EXPECTED_PREDICT["p50"])
    assert _get(s, "genqueue_phase_seconds", phase="predict_time", quantile="0.99") == pytest.approx(
        EXPECTED_PREDICT["p99"])
    assert _get(s, "genqueue_replicate_requests_total", endpoint="predictions.create", code="201") == 2
    assert _get(s, "genqueue_replicate_requests_total", endpoint="predictions.get", code="200") == 2
    assert _get(s, "genqueue_ratelimit_waits_total", kind="create") == 2
    assert _get(s, "genqueue_ratelimit_wait_seconds_total", kind="create") == pytest.approx(0.5)
    assert _get(s, "genqueue_metrics_redis_up") == 1


def test_metrics_auth(ops: Ops) -> None:
    assert ops.client.get("/metrics").status_code == 401
    assert ops.client.get("/metrics", headers=ops.auth("alice")).status_code == 403
    assert ops.client.get("/metrics", headers=ops.auth("admin")).status_code == 200


def test_dashboard_shell_is_public_and_dataless(ops: Ops) -> None:
    page = ops.client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Content-Security-Policy" in page.headers
    assert "acme/painter" not in page.text
    for name in ("app.js", "charts.js", "style.css"):
        assert ops.client.get(f"/dashboard/static/{name}").status_code == 200
    assert ops.client.get("/dashboard/static/..%2Fapp.py").status_code == 404
    assert ops.client.get("/dashboard/static/index.py").status_code == 404
