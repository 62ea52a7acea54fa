"""A slow webhook-secret fetch must not stall the API, and /readyz must notice a stalled thread pool.

Before: `WebhookSecret.get` held a lock across the fetch, so with GENQUEUE_WEBHOOK_SECRET unset and
Replicate slow, 40 concurrent signed-looking deliveries each took a thread-pool thread and waited on
that lock: every route that needs the pool (the key lookup does) stalled behind them. Now one fetch at
a time runs without the lock held, every other delivery is answered 503 at once, and /readyz (async,
with a probe through the pool) answers 503 within seconds when the pool is full.

Real uvicorn on loopback (true concurrency), the production app on PostgreSQL.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import APIRouter
from sec_support import SecApi, build_api
from standardwebhooks import Webhook

from genqueue.api.webhook_auth import WebhookSecret

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks spec's example secret: fake
PARALLEL = 40  # anyio's default thread-pool size: enough to take every thread before the fix
BODY = json.dumps({"id": "pred1", "status": "succeeded", "output": None}).encode()


def _signed(body: bytes, secret: str = WHSEC) -> dict[str, str]:
    stamp = datetime.now(UTC)
    sig = Webhook(secret).sign("msg_1", stamp, body)
    return {"webhook-id": "msg_1", "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": sig, "content-type": "application/json"}


class Served:
    def __init__(self, api: SecApi) -> None:
        self.api = api
        config = uvicorn.Config(api.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def served(pg_url: str, sec_redis_url: str, tmp_path: Path) -> Iterator[Served]:
    api, close = build_api(pg_url, sec_redis_url, tmp_path)
    served = Served(api)
    try:
        yield served
    finally:
        served.stop()
        close()


def test_slow_secret_fetch_does_not_stall_the_api(served: Served) -> None:
    release = threading.Event()
    fetches: list[float] = []

    def slow_fetch() -> str:  # Replicate taking its time over GET /v1/webhooks/default/secret
        fetches.append(time.monotonic())
        release.wait(30)
        return WHSEC

    settings = served.api.settings.model_copy(update={"webhook_secret": None})
    served.api.app.state.webhook_secret = WebhookSecret(settings, fetch=slow_fetch)
    url = f"{served.url}/v1/replicate/webhook?job=abc"
    bogus = {**_signed(BODY), "webhook-signature": "v1,AAAA"}

    def deliver(_: int) -> tuple[int, float]:
        started = time.monotonic()
        r = httpx.post(url, content=BODY, headers=bogus, timeout=40)
        return r.status_code, time.monotonic() - started

    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = [pool.submit(deliver, i) for i in range(PARALLEL)]
        time.sleep(1.0)  # every delivery has arrived; before the fix each now holds a pool thread
        try:
            started = time.monotonic()
            r = httpx.get(f"{served.url}/v1/jobs", headers=served.api.auth("ops"), timeout=5)
            assert r.status_code == 200, r.text
            assert time.monotonic() - started < 2.0
            r = httpx.get(f"{served.url}/readyz", timeout=5)
            assert r.status_code == 200, r.text
        finally:
            release.set()
        results = [f.result() for f in futures]
    assert len(fetches) == 1, "one fetch at a time, however many deliveries wait for the secret"
    quick = [code for code, took in results if took < 2.0]
    assert quick.count(503) >= PARALLEL - 1, results  # answered at once while the fetch ran
    assert {code for code, _ in results} <= {503, 401}, results  # the fetcher saw a bad signature: 401
    # Once fetched, the secret is used: a correctly signed delivery is accepted.
    r = httpx.post(url, content=BODY, headers=_signed(BODY), timeout=10)
    assert r.status_code == 200, r.text


def test_a_failed_fetch_is_not_retried_by_every_delivery(served: Served) -> None:
    calls: list[int] = []

    def failing_fetch() -> str:
        calls.append(1)
        raise httpx.ConnectError("Replicate unreachable")

    settings = served.api.settings.model_copy(update={"webhook_secret": None})
    served.api.app.state.webhook_secret = WebhookSecret(settings, fetch=failing_fetch)
    url = f"{served.url}/v1/replicate/webhook?job=abc"
    codes = [httpx.post(url, content=BODY, headers=_signed(BODY), timeout=10).status_code for _ in range(5)]
    assert codes == [503] * 5
    assert len(calls) == 1  # the failure is remembered for a while (Replicate retries its deliveries)


def test_readyz_reports_a_stalled_thread_pool(served: Served) -> None:
    release = threading.Event()
    router = APIRouter()

    @router.get("/_test/block")
    def block() -> dict[str, bool]:  # a sync route: it holds a pool thread, as a stalled step would
        release.wait(30)
        return {"ok": True}

    served.api.app.include_router(router)
    assert httpx.get(f"{served.url}/readyz", timeout=5).status_code == 200

    def hold(_: int) -> int:
        return httpx.get(f"{served.url}/_test/block", timeout=40).status_code

    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = [pool.submit(hold, i) for i in range(PARALLEL)]
        time.sleep(1.0)
        try:
            started = time.monotonic()
            r = httpx.get(f"{served.url}/readyz", timeout=10)
            took = time.monotonic() - started
            assert r.status_code == 503, r.text
            assert r.json() == {"status": "unavailable"}
            assert took < 5.0
        finally:
            release.set()
        assert all(f.result() == 200 for f in futures)
    assert httpx.get(f"{served.url}/readyz", timeout=5).status_code == 200
