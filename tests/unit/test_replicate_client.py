"""Unit tests for worker.replicate: request shapes, parsing, error mapping, reconciliation."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from genqueue.worker.replicate import (
    TERMINAL_STATUSES,
    ForbiddenURLError,
    PermanentError,
    ReplicateClient,
    TransientError,
    input_digest,
    make_http_client,
    parse_prediction,
)

BASE = "https://api.replicate.com/v1"
HEX = "43d5bce2e1c97fa1e7d8996187a85cd5c882787989091af3b135c7a16ca23b79"
SECRET = "sk_fake_test_secret"
TOKEN = "r8_fake_token_value"

Handler = Callable[[httpx.Request], httpx.Response]


def prediction_json(pid: str = "vme6tftbgoggoxnjiwkzr6zrpa", **overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": pid,
        "model": "jigsawstack/image-generation",
        "version": HEX,
        "input": {"prompt": "a cat", "api_key": SECRET},
        "logs": "",
        "output": None,
        "data_removed": False,
        "error": None,
        "source": "api",
        "status": "starting",
        "created_at": "2025-06-27T19:17:26.199Z",
        "urls": {
            "get": f"{BASE}/predictions/{pid}",
            "cancel": f"{BASE}/predictions/{pid}/cancel",
            "web": f"https://replicate.com/p/{pid}",
        },
    }
    obj.update(overrides)
    return obj


class Recorder:
    """MockTransport handler that records every request and answers from a queue or a function."""

    def __init__(self, *answers: httpx.Response | Handler | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)

    def body(self, i: int = -1) -> Any:
        return json.loads(self.requests[i].content)


def make(
    *answers: httpx.Response | Handler | Exception, base: str = BASE, **kw: Any
) -> tuple[ReplicateClient, Recorder, list[tuple[str, int]]]:
    rec = Recorder(*answers)
    http = make_http_client(base_url=base, token=TOKEN, transport=httpx.MockTransport(rec), **kw)
    seen: list[tuple[str, int]] = []
    client = ReplicateClient(http, base, on_response=lambda e, s: seen.append((e, s)))
    return client, rec, seen


def ok(obj: Any, status: int = 201, **kw: Any) -> httpx.Response:
    return httpx.Response(status, json=obj, **kw)


def problem(status: int, body: dict[str, Any] | str | None = None, **kw: Any) -> httpx.Response:
    if body is None:
        return httpx.Response(status, **kw)
    if isinstance(body, str):
        return httpx.Response(status, text=body, **kw)
    headers = {"content-type": "application/problem+json", **kw.pop("headers", {})}
    return httpx.Response(status, content=json.dumps(body).encode(), headers=headers, **kw)


# ---- create ------------------------------------------------------------------------------------


def test_create_with_version_posts_to_predictions() -> None:
    client, rec, seen = make(ok(prediction_json()))
    version = f"jigsawstack/image-generation:{HEX}"
    p = client.create(
        input={"prompt": "a cat", "api_key": SECRET},
        version=version,
        webhook="https://hooks.example.com/replicate?job=42",
        webhook_events_filter=["completed"],
    )
    req = rec.requests[0]
    assert req.method == "POST"
    assert str(req.url) == f"{BASE}/predictions"
    assert rec.body() == {
        "version": version,
        "input": {"prompt": "a cat", "api_key": SECRET},
        "webhook": "https://hooks.example.com/replicate?job=42",
        "webhook_events_filter": ["completed"],
    }
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    assert req.headers["user-agent"] == "genqueue/0.1"
    assert req.headers["content-type"] == "application/json"
    assert "cancel-after" not in req.headers and "prefer" not in req.headers
    assert p.id == "vme6tftbgoggoxnjiwkzr6zrpa" and p.status == "starting"
    assert p.urls_get == f"{BASE}/predictions/{p.id}"
    assert seen == [("create", 201)]


def test_create_with_bare_version_hex_is_passed_as_given() -> None:
    client, rec, _ = make(ok(prediction_json()))
    client.create(input={"prompt": "x"}, version=HEX)
    assert rec.body() == {"version": HEX, "input": {"prompt": "x"}}


def test_create_with_model_uses_model_endpoint() -> None:
    client, rec, _ = make(ok(prediction_json(), status=202))
    p = client.create(input={"prompt": "x"}, model="black-forest-labs/flux-schnell")
    assert str(rec.requests[0].url) == f"{BASE}/models/black-forest-labs/flux-schnell/predictions"
    assert rec.body() == {"input": {"prompt": "x"}}
    assert p.status == "starting"


def test_create_with_deployment_uses_deployment_endpoint() -> None:
    client, rec, _ = make(ok(prediction_json()))
    client.create(input={"prompt": "x"}, deployment="acme/my-deploy", cancel_after=90)
    assert str(rec.requests[0].url) == f"{BASE}/deployments/acme/my-deploy/predictions"
    assert rec.body() == {"input": {"prompt": "x"}}
    assert rec.requests[0].headers["cancel-after"] == "90s"


def test_create_cancel_after_has_a_five_second_minimum_and_rounds_up() -> None:
    client, rec, _ = make(ok(prediction_json()))
    client.create(input={}, version=HEX, cancel_after=1)
    client.create(input={}, version=HEX, cancel_after=12.2)
    assert [r.headers["cancel-after"] for r in rec.requests] == ["5s", "13s"]


def test_create_wait_sets_prefer_header_and_extends_read_timeout() -> None:
    client, rec, _ = make(ok(prediction_json(status="succeeded")), timeout=30.0, connect_timeout=5.0)
    client.create(input={}, version=HEX, wait=45)
    req = rec.requests[0]
    assert req.headers["prefer"] == "wait=45"
    timeout = req.extensions["timeout"]
    assert timeout["read"] == 55.0
    assert timeout["connect"] == 5.0


def test_create_without_wait_keeps_default_timeout() -> None:
    client, rec, _ = make(ok(prediction_json()), timeout=30.0, connect_timeout=5.0)
    client.create(input={}, version=HEX)
    assert rec.requests[0].extensions["timeout"]["read"] == 30.0
    assert rec.requests[0].extensions["timeout"]["connect"] == 5.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"version": HEX, "model": "a/b"},
        {"model": "a/b", "deployment": "c/d"},
        {"model": "not-a-slug"},
        {"model": "a/b/../c"},
        {"version": HEX, "wait": 0},
        {"version": HEX, "wait": 61},
    ],
)
def test_create_rejects_bad_arguments_without_sending(kwargs: dict[str, Any]) -> None:
    client, rec, _ = make(ok(prediction_json()))
    with pytest.raises(ValueError):
        client.create(input={}, **kwargs)
    assert rec.requests == []


# ---- get / cancel / list --------------------------------------------------------------------------


def test_get_polls_the_given_url() -> None:
    client, rec, seen = make(ok(prediction_json(status="processing"), status=200))
    p = client.get(f"{BASE}/predictions/abc123")
    assert rec.requests[0].method == "GET"
    assert str(rec.requests[0].url) == f"{BASE}/predictions/abc123"
    assert p.status == "processing" and not p.is_terminal
    assert seen == [("get", 200)]


def test_get_by_id_builds_the_url() -> None:
    client, rec, _ = make(ok(prediction_json(), status=200))
    client.get_by_id("vme6tftbgoggoxnjiwkzr6zrpa")
    assert str(rec.requests[0].url) == f"{BASE}/predictions/vme6tftbgoggoxnjiwkzr6zrpa"
    with pytest.raises(ValueError):
        client.get_by_id("../models")


def test_cancel_posts_to_cancel_url() -> None:
    body = prediction_json(status="canceled", completed_at="2025-06-27T19:17:28Z", webhook_completed=None)
    client, rec, seen = make(ok(body, status=200))
    p = client.cancel(f"{BASE}/predictions/abc/cancel")
    assert rec.requests[0].method == "POST"
    assert str(rec.requests[0].url) == f"{BASE}/predictions/abc/cancel"
    assert p.status == "canceled" and p.is_terminal
    assert seen == [("cancel", 200)]


def test_local_simulator_base_url_with_port() -> None:
    base = "http://127.0.0.1:5001/v1"
    client, rec, _ = make(ok(prediction_json(), status=200), base=base)
    client.get("http://127.0.0.1:5001/v1/predictions/abc")
    assert str(rec.requests[0].url) == "http://127.0.0.1:5001/v1/predictions/abc"
    with pytest.raises(ForbiddenURLError):
        client.get("http://127.0.0.1:5002/v1/predictions/abc")
    assert len(rec.requests) == 1


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/v1/predictions/abc",
        "http://api.replicate.com/v1/predictions/abc",
        "https://api.replicate.com:8443/v1/predictions/abc",
        "https://api.replicate.com/v2/predictions/abc",
        "https://api.replicate.com/v1x/predictions",
        "https://api.replicate.com/v1/../admin",
        "https://user:pw@api.replicate.com/v1/predictions/abc",
        "https://api.replicate.com.evil.com/v1/predictions/abc",
        "not a url",
    ],
)
def test_foreign_urls_are_refused_without_a_request(url: str) -> None:
    client, rec, seen = make(ok(prediction_json(), status=200))
    with pytest.raises(ForbiddenURLError):
        client.get(url)
    with pytest.raises(ForbiddenURLError):
        client.cancel(url)
    with pytest.raises(ForbiddenURLError):
        client.list(url=url)
    assert rec.requests == [] and seen == []


def test_forbidden_url_error_is_permanent() -> None:
    assert issubclass(ForbiddenURLError, PermanentError)


def test_explicit_default_port_is_same_origin() -> None:
    client, rec, _ = make(ok(prediction_json(), status=200))
    client.get("https://api.replicate.com:443/v1/predictions/abc")
    assert len(rec.requests) == 1


def test_list_sends_iso_filters_and_follows_next() -> None:
    next_url = f"{BASE}/predictions?cursor=cD0yMDI1"
    pages = [
        ok({"next": next_url, "previous": None, "results": [prediction_json("a1")]}, status=200),
        ok({"next": None, "previous": None, "results": [prediction_json("b2")]}, status=200),
    ]
    client, rec, seen = make(*pages)
    after = datetime(2025, 6, 27, 19, 0, tzinfo=UTC)
    before = datetime(2025, 6, 27, 21, 0, tzinfo=UTC)
    page = client.list(created_after=after, created_before=before)
    assert [p.id for p in page.results] == ["a1"] and page.next == next_url
    first = rec.requests[0]
    assert first.url.path == "/v1/predictions"
    assert first.url.params["created_after"] == "2025-06-27T19:00:00Z"
    assert first.url.params["created_before"] == "2025-06-27T21:00:00Z"
    page2 = client.list(url=page.next)
    assert str(rec.requests[1].url) == next_url
    assert [p.id for p in page2.results] == ["b2"] and page2.next is None
    assert seen == [("list", 200), ("list", 200)]


def test_list_converts_other_timezones_to_utc() -> None:
    client, rec, _ = make(ok({"next": None, "results": []}, status=200))
    client.list(created_after=datetime(2025, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))))
    assert rec.requests[0].url.params["created_after"] == "2025-01-01T10:00:00Z"


def test_iter_predictions_respects_max_pages() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        n = int(request.url.params.get("page", "0"))
        return ok(
            {"next": f"{BASE}/predictions?page={n + 1}", "results": [prediction_json(f"p{n}")]}, status=200
        )

    client, rec, _ = make(answer)
    ids = [p.id for p in client.iter_predictions(max_pages=3)]
    assert ids == ["p0", "p1", "p2"]
    assert len(rec.requests) == 3


def test_list_page_with_foreign_next_is_not_followed() -> None:
    client, rec, _ = make(
        ok({"next": "https://evil.example.com/v1/predictions?c=1", "results": [prediction_json("a")]}, 200)
    )
    it = client.iter_predictions()
    assert next(it).id == "a"
    with pytest.raises(ForbiddenURLError):
        next(it)
    assert len(rec.requests) == 1


# ---- parsing ------------------------------------------------------------------------------------


def test_parse_full_prediction_drops_input_but_keeps_digest() -> None:
    obj = prediction_json(
        status="succeeded",
        output="https://replicate.delivery/xezq/abc/output.png",
        started_at="2025-06-27T19:17:26.206297Z",
        completed_at="2023-08-28T11:36:20.72056036Z",
        metrics={"predict_time": 1.814149156, "total_time": 1.821446, "image_count": 1},
    )
    p = parse_prediction(obj)
    assert p.is_terminal and p.output.endswith("output.png")
    assert p.created_at == datetime(2025, 6, 27, 19, 17, 26, 199000, tzinfo=UTC)
    assert p.started_at == datetime(2025, 6, 27, 19, 17, 26, 206297, tzinfo=UTC)
    assert p.completed_at == datetime(2023, 8, 28, 11, 36, 20, 720560, tzinfo=UTC)
    assert p.predict_time == pytest.approx(1.814149156) and p.total_time == pytest.approx(1.821446)
    assert p.input_digest == input_digest({"api_key": SECRET, "prompt": "a cat"})
    assert not hasattr(p, "input")
    assert SECRET not in repr(p)


def test_parse_lenient_minimal_object() -> None:
    p = parse_prediction({"id": "x", "status": "processing", "logs": None, "weird": {"nested": 1}})
    assert p.output is None and p.data_removed is False and p.started_at is None
    assert p.predict_time is None and p.total_time is None
    assert p.urls_get is None and p.urls_cancel is None and p.input_digest is None
    assert p.model is None and p.version is None


def test_parse_metrics_empty_or_only_predict_time() -> None:
    assert parse_prediction(prediction_json(metrics={})).predict_time is None
    p = parse_prediction(prediction_json(metrics={"predict_time": 2}))
    assert p.predict_time == 2.0 and p.total_time is None


@pytest.mark.parametrize(
    ("stamp", "micro"),
    [
        ("2025-06-27T19:17:26.199Z", 199000),
        ("2025-06-27T19:17:26.206297Z", 206297),
        ("2025-06-27T19:17:26.720560369Z", 720560),
        ("2025-06-27T19:17:26Z", 0),
        ("2025-06-27T19:17:26.5+00:00", 500000),
    ],
)
def test_parse_timestamps(stamp: str, micro: int) -> None:
    p = parse_prediction(prediction_json(created_at=stamp))
    assert p.created_at == datetime(2025, 6, 27, 19, 17, 26, micro, tzinfo=UTC)


def test_parse_bad_timestamp_is_none() -> None:
    assert parse_prediction(prediction_json(created_at="yesterday")).created_at is None


@pytest.mark.parametrize("status", ["starting", "processing", "succeeded", "failed", "canceled", "aborted"])
def test_parse_all_statuses(status: str) -> None:
    p = parse_prediction(prediction_json(status=status))
    assert p.status == status
    assert p.is_terminal == (status in {"succeeded", "failed", "canceled", "aborted"})


def test_unknown_status_is_kept_and_not_terminal() -> None:
    p = parse_prediction(prediction_json(status="paused"))
    assert p.status == "paused" and not p.is_terminal
    assert frozenset({"succeeded", "failed", "canceled", "aborted"}) == TERMINAL_STATUSES


def test_parse_failed_and_data_removed() -> None:
    p = parse_prediction(prediction_json(status="failed", error="CUDA OOM", data_removed=True, input={}))
    assert p.error == "CUDA OOM" and p.data_removed is True
    assert p.input_digest == input_digest({})


@pytest.mark.parametrize("obj", [{"status": "starting"}, {"id": "x"}, {"id": "", "status": "x"}, [], "x"])
def test_parse_malformed_raises_permanent(obj: Any) -> None:
    with pytest.raises(PermanentError, match="malformed response"):
        parse_prediction(obj)


def test_non_json_success_is_malformed() -> None:
    client, _, _ = make(httpx.Response(201, text="<html>ok</html>"))
    with pytest.raises(PermanentError, match="malformed response"):
        client.create(input={}, version=HEX)


def test_input_digest_is_canonical() -> None:
    a = input_digest({"b": 1, "a": "é"})
    assert a == input_digest({"a": "é", "b": 1})
    assert a == hashlib.sha256('{"a":"é","b":1}'.encode()).hexdigest()


# ---- errors -------------------------------------------------------------------------------------


def test_429_retry_after_header_seconds_wins() -> None:
    body = {
        "detail": "Request was throttled. Expected available in 7 seconds.",
        "status": 429,
        "retry_after": 3,
    }
    client, _, seen = make(problem(429, body, headers={"Retry-After": "12"}))
    with pytest.raises(TransientError) as info:
        client.create(input={}, version=HEX)
    err = info.value
    assert err.status_code == 429 and err.retry_after == 12.0
    assert err.request_sent_maybe is False
    assert seen == [("create", 429)]


def test_429_retry_after_header_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    client, _, _ = make(
        problem(429, {"detail": "slow down"}, headers={"Retry-After": format_datetime(when, True)})
    )
    with pytest.raises(TransientError) as info:
        client.get_by_id("abc")
    assert info.value.retry_after is not None and 25 <= info.value.retry_after <= 31


def test_429_body_retry_after_then_detail_number() -> None:
    body = {
        "detail": "Request was throttled. Expected available in 9 seconds.",
        "status": 429,
        "retry_after": 2,
    }
    client, _, _ = make(problem(429, body), problem(429, {"detail": body["detail"], "status": 429}))
    with pytest.raises(TransientError) as first:
        client.create(input={}, version=HEX)
    assert first.value.retry_after == 2.0
    with pytest.raises(TransientError) as second:
        client.create(input={}, version=HEX)
    assert second.value.retry_after == 9.0
    assert "throttled" in str(second.value) and "429" in str(second.value)


def test_429_without_hint_has_no_retry_after() -> None:
    client, _, _ = make(problem(429, "Too Many Requests"))
    with pytest.raises(TransientError) as info:
        client.list()
    assert info.value.retry_after is None and info.value.status_code == 429


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_transient_and_ambiguous(status: int) -> None:
    client, _, seen = make(problem(status, "<html>Bad gateway</html>"))
    with pytest.raises(TransientError) as info:
        client.create(input={}, version=HEX)
    assert info.value.status_code == status
    assert info.value.request_sent_maybe is True
    assert seen == [("create", status)]


@pytest.mark.parametrize(
    ("exc", "sent_maybe"),
    [
        (httpx.ConnectError("Connection refused"), False),
        (httpx.ConnectTimeout("timed out"), False),
        (httpx.ReadTimeout("timed out"), True),
        (httpx.ReadError("reset"), True),
        (httpx.WriteError("broken pipe"), True),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), True),
    ],
)
def test_transport_errors_are_transient(exc: Exception, sent_maybe: bool) -> None:
    client, rec, seen = make(exc)
    with pytest.raises(TransientError) as info:
        client.create(input={"api_key": SECRET}, version=HEX)
    assert info.value.request_sent_maybe is sent_maybe
    assert info.value.status_code is None and info.value.retry_after is None
    assert type(exc).__name__ in str(info.value)
    assert seen == [("create", 0)]
    assert rec.body()["input"] == {"api_key": SECRET}


def test_422_is_permanent_with_invalid_fields() -> None:
    body = {
        "title": "Input validation failed",
        "detail": "- input: prompt is required\n",
        "status": 422,
        "invalid_fields": [{"type": "required", "field": "input", "description": "prompt is required"}],
    }
    client, _, _ = make(problem(422, body))
    with pytest.raises(PermanentError) as info:
        client.create(input={"api_key": SECRET}, version=HEX)
    err = info.value
    assert err.status_code == 422 and err.title == "Input validation failed"
    assert err.invalid_fields == [{"type": "required", "field": "input", "description": "prompt is required"}]
    assert "Input validation failed" in str(err) and "prompt is required" in str(err)


@pytest.mark.parametrize(
    ("status", "body", "text"),
    [
        (
            401,
            {
                "title": "Unauthenticated",
                "detail": "You did not pass a valid authentication token",
                "status": 401,
            },
            "Unauthenticated",
        ),
        (
            402,
            {"title": "Insufficient credit", "detail": "You have insufficient credit.", "status": 402},
            "insufficient credit",
        ),
        (404, {"detail": "The requested resource could not be found.", "status": 404}, "could not be found"),
        (400, "bad request, not json", "HTTP 400"),
        (403, None, "HTTP 403"),
    ],
)
def test_other_4xx_are_permanent(status: int, body: dict[str, Any] | str | None, text: str) -> None:
    client, _, seen = make(problem(status, body))
    with pytest.raises(PermanentError) as info:
        client.get_by_id("abc")
    assert not isinstance(info.value, TransientError)
    assert info.value.status_code == status and info.value.invalid_fields == []
    assert text in str(info.value)
    assert seen == [("get", status)]


def test_redirect_is_not_followed() -> None:
    client, rec, _ = make(httpx.Response(302, headers={"Location": "https://evil.example.com/v1/x"}))
    with pytest.raises(PermanentError):
        client.get_by_id("abc")
    assert len(rec.requests) == 1


@pytest.mark.parametrize(
    "answer",
    [
        problem(500, {"detail": "internal"}),
        problem(500, "oops"),
        problem(422, {"title": "Input validation failed", "detail": "- input: bad", "status": 422}),
        httpx.ReadTimeout("timed out"),
        httpx.ConnectError("refused"),
    ],
)
def test_secrets_never_in_error_text(answer: httpx.Response | Exception) -> None:
    client, rec, _ = make(answer)
    with pytest.raises(Exception) as info:
        client.create(input={"api_key": SECRET, "prompt": "hi"}, version=HEX)
    assert SECRET in rec.requests[0].content.decode()  # it was sent...
    for text in (str(info.value), repr(info.value), repr(info.value.args)):  # ...but never echoed
        assert SECRET not in text and TOKEN not in text


def test_on_response_hook_failure_does_not_break_calls() -> None:
    rec = Recorder(ok(prediction_json(), status=200))
    http = make_http_client(base_url=BASE, token=TOKEN, transport=httpx.MockTransport(rec))

    def broken(endpoint: str, status: int) -> None:
        raise RuntimeError("metrics down")

    assert ReplicateClient(http, BASE, on_response=broken).get_by_id("abc").id


# ---- find_created -------------------------------------------------------------------------------

SENT = {"prompt": "a cat", "api_key": SECRET}


def listing(*items: dict[str, Any], next_url: str | None = None) -> httpx.Response:
    return ok({"next": next_url, "previous": None, "results": list(items)}, status=200)


def test_find_created_matches_digest_and_version_hex() -> None:
    after = datetime(2025, 6, 27, 19, 17, 0, tzinfo=UTC)
    answer = listing(
        prediction_json(
            "newer", input={"prompt": "other", "api_key": SECRET}, created_at="2025-06-27T19:18:00Z"
        ),
        prediction_json("other_version", version="0" * 64, created_at="2025-06-27T19:17:40Z"),
        prediction_json("mine", created_at="2025-06-27T19:17:26.199Z"),
    )
    client, rec, _ = make(answer)
    found = client.find_created(
        created_after=after,
        version=f"jigsawstack/image-generation:{HEX}",
        model=None,
        input_digest=input_digest(SENT),
    )
    assert found is not None and found.id == "mine"
    assert rec.requests[0].url.params["created_after"] == "2025-06-27T19:17:00Z"


def test_find_created_matches_model_and_follows_pages() -> None:
    after = datetime(2025, 6, 27, 19, 0, tzinfo=UTC)
    page1 = listing(
        prediction_json("p1", input={"prompt": "x"}, created_at="2025-06-27T19:30:00Z"),
        next_url=f"{BASE}/predictions?cursor=abc",
    )
    page2 = listing(
        prediction_json("wrong_model", model="someone/else", created_at="2025-06-27T19:20:00Z"),
        prediction_json("mine", model="acme/flux", created_at="2025-06-27T19:10:00Z"),
    )
    client, rec, _ = make(page1, page2)
    found = client.find_created(
        created_after=after, version=None, model="acme/flux", input_digest=input_digest(SENT)
    )
    assert found is not None and found.id == "mine"
    assert str(rec.requests[1].url) == f"{BASE}/predictions?cursor=abc"


def test_find_created_stops_at_older_predictions() -> None:
    after = datetime(2025, 6, 27, 19, 0, tzinfo=UTC)
    page1 = listing(
        prediction_json("too_old", created_at="2025-06-27T18:59:59Z"),
        next_url=f"{BASE}/predictions?cursor=more",
    )
    client, rec, _ = make(page1)
    assert (
        client.find_created(created_after=after, version=HEX, model=None, input_digest=input_digest(SENT))
        is None
    )
    assert len(rec.requests) == 1


def test_find_created_prefers_the_oldest_match() -> None:
    after = datetime(2025, 6, 27, 19, 0, tzinfo=UTC)
    client, _, _ = make(
        listing(
            prediction_json("second", created_at="2025-06-27T19:05:00Z"),
            prediction_json("first", created_at="2025-06-27T19:01:00Z"),
        )
    )
    found = client.find_created(created_after=after, version=HEX, model=None, input_digest=input_digest(SENT))
    assert found is not None and found.id == "first"


def test_find_created_skips_excluded_predictions() -> None:
    # A retried job's earlier attempts made predictions of the same input: never adopted as the current one.
    after = datetime(2025, 6, 27, 19, 0, tzinfo=UTC)
    client, _, _ = make(
        listing(
            prediction_json("attempt2", created_at="2025-06-27T19:05:00Z"),
            prediction_json("attempt1", created_at="2025-06-27T19:01:00Z"),
        )
    )
    found = client.find_created(created_after=after, version=HEX, model=None, input_digest=input_digest(SENT),
                                exclude=frozenset({"attempt1"}))
    assert found is not None and found.id == "attempt2"
    assert client.find_created(created_after=after, version=HEX, model=None, input_digest=input_digest(SENT),
                               exclude=frozenset({"attempt1", "attempt2"})) is None


def test_find_created_ignores_removed_inputs() -> None:
    after = datetime(2025, 6, 27, 19, 0, tzinfo=UTC)
    client, _, _ = make(listing(prediction_json("gone", input={}, data_removed=True)))
    assert (
        client.find_created(created_after=after, version=HEX, model=None, input_digest=input_digest(SENT))
        is None
    )
