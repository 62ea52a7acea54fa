"""Webhook delivery over real loopback HTTP: events, signing, retries, cancel, faults, stats."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sim_helpers import AUTH, GOOD_INPUT, REF, MakeSim
from webhook_receiver import Delivery, Receiver

from genqueue.simulator.server import SimHandle
from genqueue.simulator.webhook_wire import signature

FAST_RETRY = {"webhook_backoff_seconds": 0.05}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


def verify(secret: str, d: Delivery) -> bool:
    """An independent Standard Webhooks check (does not use the simulator's code)."""
    key = base64.b64decode(secret.split("_", 1)[1])
    content = f"{d.headers['webhook-id']}.{d.headers['webhook-timestamp']}.".encode() + d.body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    given = [part.split(",", 1)[1] for part in d.headers["webhook-signature"].split() if part.startswith("v1,")]
    return any(hmac.compare_digest(expected, g) for g in given)


def stats(sim: SimHandle) -> dict[str, Any]:
    return httpx.get(f"{sim.base_url}/_sim/stats").json()


def wait_stats(sim: SimHandle, key: str, value: int, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = stats(sim)
        if data[key] == value:
            return data
        time.sleep(0.02)
    raise AssertionError(f"{key} never reached {value}: {stats(sim)}")


def create_hooked(sim: SimHandle, url: str, events: list[str] | None = None, **kwargs: Any) -> httpx.Response:
    extra: dict[str, Any] = {"webhook": url}
    if events is not None:
        extra["webhook_events_filter"] = events
    with httpx.Client(base_url=sim.base_url, headers=AUTH, timeout=10) as c:
        return _post_create(c, extra, **kwargs)


def _post_create(c: httpx.Client, extra: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return c.post("/v1/predictions", json={"version": REF, "input": GOOD_INPUT, **extra}, **kwargs)


def status_of(d: Delivery) -> str:
    return str(json.loads(d.body)["status"])


def test_reference_test_vector() -> None:
    key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    got = signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_completed_event_signed_and_equal_to_get(make_sim: MakeSim, receiver: Receiver) -> None:
    sim = make_sim()
    r = create_hooked(sim, receiver.url("/hook?job=42"), ["completed"])
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    (d,) = receiver.wait_for(1)
    assert d.path == "/hook?job=42"  # the receiver's own query parameters are kept
    assert d.headers["content-type"] == "application/json"
    assert d.headers["webhook-id"].startswith("msg_")
    assert abs(int(d.headers["webhook-timestamp"]) - time.time()) < 60
    with httpx.Client(base_url=sim.base_url, headers=AUTH) as c:
        secret = c.get("/v1/webhooks/default/secret").json()["key"]
        assert verify(secret, d)
        assert not verify("whsec_" + base64.b64encode(b"another key").decode(), d)
        assert json.loads(d.body) == c.get(f"/v1/predictions/{pid}").json()
    assert status_of(d) == "succeeded"
    # The receiver records a delivery before it answers; the simulator counts it after the answer.
    data = wait_stats(sim, "webhooks_sent", 1)
    time.sleep(0.2)
    assert len(receiver.snapshot()) == 1  # no start event with filter ["completed"]
    assert (data["webhooks_sent"], data["webhook_attempts"], data["webhook_failures"]) == (1, 1, 0)
    assert data["webhooks_pending"] == 0 and data["webhooks_given_up"] == 0
    assert data["webhook_lag_ms"]["count"] == 1 and 0 <= data["webhook_lag_ms"]["p50"] < 1000
    record = httpx.get(f"{sim.base_url}/_sim/predictions/{pid}")
    assert record.json()["webhook"]["delivered_at"] is not None
    assert "job=42" not in record.text  # the receiver URL is not echoed in introspection


def test_rotated_secret_signs_new_deliveries(make_sim: MakeSim, receiver: Receiver) -> None:
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    sim = make_sim(webhook_secret=secret)
    create_hooked(sim, receiver.url(), ["completed"])
    assert verify(secret, receiver.wait_for(1)[0])


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        (None, ["processing", "succeeded"]),
        ([], ["processing", "succeeded"]),
        (["start", "completed"], ["processing", "succeeded"]),
        (["start"], ["processing"]),
        (["completed", "output", "logs"], ["succeeded"]),
        (["output", "logs"], []),
    ],
)
def test_event_filter(make_sim: MakeSim, receiver: Receiver, events: list[str] | None,
                      expected: list[str]) -> None:
    sim = make_sim()
    assert create_hooked(sim, receiver.url(), events).status_code == 201
    if expected:
        receiver.wait_for(len(expected))
    time.sleep(0.3)  # start at 0.05 s, end at 0.2 s: anything unexpected has had time to arrive
    got = receiver.snapshot()
    assert sorted(status_of(d) for d in got) == expected
    assert len({d.headers["webhook-id"] for d in got}) == len(got)  # one id per event


def test_retry_after_500_keeps_webhook_id(make_sim: MakeSim, receiver: Receiver) -> None:
    receiver.responder = lambda path, index: (500, {}) if index == 0 else (200, {})
    sim = make_sim(**FAST_RETRY)
    create_hooked(sim, receiver.url(), ["completed"])
    first, second = receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert second.at - first.at >= 0.04
    assert status_of(second) == "succeeded"
    data = wait_stats(sim, "webhooks_pending", 0)
    assert (data["webhooks_sent"], data["webhook_attempts"], data["webhook_failures"]) == (1, 2, 1)


def test_gives_up_after_retry_window(make_sim: MakeSim, receiver: Receiver) -> None:
    receiver.responder = lambda path, index: (503, {})
    sim = make_sim(webhook_retry_seconds=0.5, **FAST_RETRY)
    create_hooked(sim, receiver.url(), ["completed"])
    data = wait_stats(sim, "webhooks_given_up", 1)
    got = receiver.snapshot()
    # Due at 0, 0.05, 0.15, 0.35 s (0.75 s is past the window); a slow machine may fit in fewer.
    assert 2 <= len(got) <= 4
    assert len({d.headers["webhook-id"] for d in got}) == 1
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    assert all(gap >= 0.045 * 2**i for i, gap in enumerate(gaps)), gaps  # backoff doubles (load only adds)
    assert data["webhook_attempts"] == data["webhook_failures"] == len(got)
    assert data["webhooks_sent"] == data["webhooks_pending"] == 0


def test_start_event_is_not_retried(make_sim: MakeSim, receiver: Receiver) -> None:
    receiver.responder = lambda path, index: (500, {}) if index == 0 else (200, {})
    sim = make_sim(**FAST_RETRY)
    create_hooked(sim, receiver.url())
    wait_stats(sim, "webhooks_pending", 0)
    assert [status_of(d) for d in receiver.snapshot()] == ["processing", "succeeded"]


def test_redirect_is_not_followed(make_sim: MakeSim, receiver: Receiver) -> None:
    receiver.responder = lambda path, index: (307, {"location": "/elsewhere"})
    sim = make_sim(webhook_retry_seconds=0.0)
    create_hooked(sim, receiver.url("/hook"), ["completed"])
    data = wait_stats(sim, "webhooks_given_up", 1)
    assert [d.path for d in receiver.snapshot()] == ["/hook"]
    assert data["webhook_failures"] == 1


def test_connection_refused_counts_as_failure(make_sim: MakeSim) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sim = make_sim(webhook_retry_seconds=0.1, **FAST_RETRY)
    create_hooked(sim, f"http://127.0.0.1:{port}/hook", ["completed"])
    data = wait_stats(sim, "webhooks_given_up", 1)
    assert data["webhook_failures"] == data["webhook_attempts"] >= 1  # due at 0 and 0.05 s
    assert data["webhooks_sent"] == 0


def test_cancel_while_running_sends_canceled(make_sim: MakeSim, receiver: Receiver) -> None:
    sim = make_sim(predict_seconds=30)
    pid = create_hooked(sim, receiver.url()).json()["id"]
    receiver.wait_for(1)  # start
    with httpx.Client(base_url=sim.base_url, headers=AUTH) as c:
        assert c.post(f"/v1/predictions/{pid}/cancel").json()["status"] == "canceled"
    start, done = receiver.wait_for(2, timeout=2.0)
    assert (status_of(start), status_of(done)) == ("processing", "canceled")
    assert done.headers["webhook-id"] != start.headers["webhook-id"]
    time.sleep(0.2)
    assert len(receiver.snapshot()) == 2


def test_cancel_before_start_sends_only_completed(make_sim: MakeSim, receiver: Receiver) -> None:
    sim = make_sim(start_delay=30)
    pid = create_hooked(sim, receiver.url()).json()["id"]
    with httpx.Client(base_url=sim.base_url, headers=AUTH) as c:
        c.post(f"/v1/predictions/{pid}/cancel")
    (done,) = receiver.wait_for(1, timeout=2.0)
    assert status_of(done) == "canceled" and "started_at" not in json.loads(done.body)


def test_cancel_after_deadline_sends_aborted(make_sim: MakeSim, receiver: Receiver) -> None:
    sim = make_sim(start_delay=30, min_cancel_after=0.1)
    r = create_hooked(sim, receiver.url(), headers={"Cancel-After": "0.3"})
    assert r.status_code == 201
    (done,) = receiver.wait_for(1, timeout=3.0)
    assert status_of(done) == "aborted"
    time.sleep(0.2)
    assert len(receiver.snapshot()) == 1  # never started: no start event


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"webhook": "ftp://example.com/hook"}, "webhook"),
        ({"webhook": "not a url"}, "webhook"),
        ({"webhook": "https://"}, "webhook"),
        ({"webhook": "http://example.com:99999/x"}, "webhook"),
        ({"webhook": 42}, "webhook"),
        ({"webhook": "https://example.com/h", "webhook_events_filter": ["start", "finished"]},
         "webhook_events_filter.1"),
        ({"webhook": "https://example.com/h", "webhook_events_filter": "completed"}, "webhook_events_filter"),
    ],
)
def test_invalid_webhook_fields_422(sim: SimHandle, client: httpx.Client, extra: dict[str, Any],
                                    field: str) -> None:
    r = _post_create(client, extra)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == 422 and [f["field"] for f in body["invalid_fields"]] == [field]
    assert stats(sim)["predictions"] == 0


def test_https_webhook_accepted(make_sim: MakeSim) -> None:
    sim = make_sim(webhook_retry_seconds=0.0)
    assert create_hooked(sim, "https://127.0.0.1:9/hook", ["completed"]).status_code == 201


def test_duplicate_knob_delivers_twice_with_same_id(make_sim: MakeSim, receiver: Receiver) -> None:
    sim = make_sim(webhook_duplicate_rate=1.0)
    create_hooked(sim, receiver.url(), ["completed"])
    first, second = receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert status_of(first) == status_of(second) == "succeeded"
    data = stats(sim)
    assert data["faults_injected"]["webhook_duplicate_rate"] == 1 and data["webhook_lag_ms"]["count"] == 1


def test_fail_knob_exercises_retries_without_sending(make_sim: MakeSim, receiver: Receiver) -> None:
    sim = make_sim(webhook_fail_rate=1.0, webhook_retry_seconds=0.2, **FAST_RETRY)
    create_hooked(sim, receiver.url(), ["completed"])
    data = wait_stats(sim, "webhooks_given_up", 1)
    assert data["faults_injected"]["webhook_fail_rate"] >= 2  # due at 0, 0.05, 0.15 s
    assert data["webhook_attempts"] == 0 and receiver.snapshot() == []
    # Back to normal through the admin API: the next prediction is delivered at once.
    assert httpx.post(f"{sim.base_url}/_sim/config", json={"webhook_fail_rate": 0.0}).status_code == 200
    create_hooked(sim, receiver.url(), ["completed"])
    assert status_of(receiver.wait_for(1)[0]) == "succeeded"


@pytest.mark.parametrize(
    "change",
    [{"webhook_fail_rate": 1.5}, {"webhook_duplicate_rate": -0.1}, {"webhook_backoff_seconds": 0},
     {"webhook_retry_seconds": -1}, {"webhook_secret": "not-a-secret"}, {"webhook_secret": "whsec_@@@"}],
)
def test_webhook_config_validation(sim: SimHandle, change: dict[str, Any]) -> None:
    assert httpx.post(f"{sim.base_url}/_sim/config", json=change).status_code == 400


def test_reset_forgets_pending_webhooks(make_sim: MakeSim, receiver: Receiver) -> None:
    sim = make_sim(predict_seconds=1.0)
    create_hooked(sim, receiver.url(), ["completed"])
    assert stats(sim)["webhooks_pending"] == 1
    httpx.post(f"{sim.base_url}/_sim/reset")
    time.sleep(1.3)
    assert receiver.snapshot() == [] and stats(sim)["webhooks_pending"] == 0


def test_stop_ends_delivery(make_sim: MakeSim, receiver: Receiver) -> None:
    sim = make_sim(predict_seconds=1.0)
    create_hooked(sim, receiver.url(), ["completed"])
    sim.stop()
    time.sleep(1.3)
    assert receiver.snapshot() == []


def test_many_predictions_delivered_promptly(make_sim: MakeSim, receiver: Receiver) -> None:
    sim = make_sim(start_delay=0.05, predict_seconds=0.3)
    n = 300
    with httpx.Client(base_url=sim.base_url, headers=AUTH, timeout=10) as c:
        for _ in range(n):
            assert _post_create(c, {"webhook": receiver.url(), "webhook_events_filter": ["completed"]}
                                ).status_code == 201
    data = wait_stats(sim, "webhooks_sent", n, timeout=10)
    assert data["webhook_failures"] == 0 and data["webhooks_pending"] == 0
    assert len({d.headers["webhook-id"] for d in receiver.snapshot()}) == n
    # Typically a few ms; the bound is loose because receiver, simulator and test share one process.
    assert data["webhook_lag_ms"]["p95"] < 500, data["webhook_lag_ms"]
