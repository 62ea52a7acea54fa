"""Body size cap, per-key rate limit, health probes, the catch-all 500 and the OpenAPI document."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from api_helpers import SECRET, Api, body, closed_port_url, no_secret
from starlette.types import Message, Receive, Scope, Send

from genqueue.api.bodylimit import BodySizeLimit
from genqueue.api.ratelimit import RateLimiter

MakeApi = Callable[..., Api]


def test_huge_body_is_413(make_api: MakeApi, sqlite_url: str) -> None:
    api: Api = make_api(sqlite_url, GENQUEUE_MAX_BODY_BYTES=2000)
    payload = body("x" * 3000)
    resp = api.client.post("/v1/jobs", json=payload, headers=api.auth("alice"))
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "payload_too_large"
    assert no_secret(resp.text)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed size is what counts
        yield b'{"version": "' + b"a" * 1500
        yield b"b" * 1500 + b'"}'

    streamed = api.client.post("/v1/jobs", content=chunks(),
                               headers={**api.auth("alice"), "Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert streamed.json()["error"]["code"] == "payload_too_large"
    assert api.client.post("/v1/jobs", json=body(), headers=api.auth("alice")).status_code == 202
    assert api.count_jobs() == 1


def test_rate_limit_per_key(make_api: MakeApi, sqlite_url: str) -> None:
    api: Api = make_api(sqlite_url, GENQUEUE_API_RATE_PER_MIN=3)
    # A frozen clock 10 s into a window, so the four requests cannot straddle a window boundary.
    api.app.state.limiter = RateLimiter(api.app.state.redis, 3, clock=lambda: 1_800_000_010.0)
    codes = [api.client.get("/v1/jobs", headers=api.auth("alice")).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    resp = api.client.get("/v1/jobs", headers=api.auth("alice"))
    assert resp.status_code == 429
    assert resp.json()["error"]["code"] == "rate_limited"
    assert resp.headers["Retry-After"] == "50"
    # Each key has its own budget; probes are not limited.
    assert api.client.get("/v1/jobs", headers=api.auth("bob")).status_code == 200
    assert all(api.client.get("/healthz").status_code == 200 for _ in range(5))


def test_rate_limit_fails_open_and_readyz_fails_without_redis(
    make_api: MakeApi, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    api: Api = make_api(sqlite_url, redis=closed_port_url(), GENQUEUE_API_RATE_PER_MIN=1)
    assert [api.client.get("/v1/jobs", headers=api.auth("alice")).status_code for _ in range(3)] == [200] * 3
    assert sum("rate limit disabled" in r.getMessage() for r in caplog.records) == 1
    ready = api.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable"}
    assert api.client.get("/healthz").json() == {"status": "ok"}


def test_health_probes(sqlite_api: Api) -> None:
    assert sqlite_api.client.get("/healthz").json() == {"status": "ok"}
    ready = sqlite_api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


def test_unexpected_error_is_a_bare_500(make_api: MakeApi, sqlite_url: str) -> None:
    api: Api = make_api(sqlite_url, raise_errors=False)

    def explode() -> None:
        raise RuntimeError(f"database said {SECRET} at /srv/secret/path")

    api.app.add_api_route("/boom", explode)
    resp = api.client.get("/boom")
    assert resp.status_code == 500
    assert resp.json() == {"error": {"code": "internal_error", "message": "internal server error", "fields": []}}
    assert no_secret(resp.text) and "/srv/secret" not in resp.text


def test_openapi_declares_bearer_and_models(sqlite_api: Api) -> None:
    doc = sqlite_api.client.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())
    assert {"JobView", "JobPage", "JobBatchView", "ErrorResponse", "JobRequest"} <= set(doc["components"]["schemas"])
    create = doc["paths"]["/v1/jobs"]["post"]
    assert create["security"] and "202" in create["responses"] and "422" in create["responses"]
    assert "security" not in doc["paths"]["/healthz"]["get"]
    assert "input_sealed" not in str(doc)
    assert sqlite_api.client.get("/docs").status_code == 200


def test_body_cap_counts_streamed_chunks_without_content_length() -> None:
    seen: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        seen.append(message["body"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def run(chunks: list[bytes]) -> list[Message]:
        incoming = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                    for i, c in enumerate(chunks)]
        sent: list[Message] = []

        async def receive() -> Message:
            return incoming.pop(0) if incoming else {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            sent.append(message)

        scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/", "headers": []}
        asyncio.run(BodySizeLimit(app, max_bytes=10)(scope, receive, send))
        return sent

    assert run([b"12345", b"67890", b"1"])[0]["status"] == 413
    assert seen == []
    assert run([b"12345", b"67890"])[0]["status"] == 204
    assert seen == [b"1234567890"]
