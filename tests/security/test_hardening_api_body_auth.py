"""A request body is read only after its sender is authenticated: an API-key route answers 401 (and a
webhook without its signature headers answers 401) before one byte of the body is received, so an
anonymous client cannot make the API buffer megabytes per request. Checked at the ASGI level, where
"was the body read" is observable: the test's `receive` records every call."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sec_support import SecApi, job_body

from genqueue.models.keys import revoke_key

Message = dict[str, Any]


def _call(api: SecApi, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any], int]:
    """(status, JSON body, how many times the app asked for the request body)."""
    reads = 0

    async def receive() -> Message:
        nonlocal reads
        reads += 1
        if reads == 1:
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # then only a disconnect would come
        raise AssertionError("unreachable")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    path_only, _, query = path.partition("?")
    raw = [(k.lower().encode(), v.encode()) for k, v in
           {**headers, "content-type": "application/json", "content-length": str(len(body))}.items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path_only, "raw_path": path_only.encode(), "query_string": query.encode(),
             "headers": raw, "client": ("127.0.0.1", 5000), "server": ("testserver", 80), "root_path": ""}

    async def run() -> None:
        await api.app(scope, receive, send)

    asyncio.run(run())
    start = next(m for m in sent if m["type"] == "http.response.start")
    text = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(start["status"]), json.loads(text), reads


BODY = json.dumps(job_body()).encode()


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Bearer gq_not_a_real_key_fake"},
], ids=["no-key", "not-bearer", "unknown-key"])
@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/jobs/batch", "/v1/jobs/abc/cancel"])
def test_unauthenticated_body_is_never_read(sec_api: SecApi, path: str, headers: dict[str, str]) -> None:
    status, body, reads = _call(sec_api, path, headers, BODY)
    assert status == 401, body
    assert body["error"]["code"] == "unauthorized"
    assert reads == 0


def test_revoked_key_body_is_never_read(sec_api: SecApi) -> None:
    with sec_api.sessions.begin() as s:
        assert revoke_key(s, sec_api.key_ids["bob"])
    status, _, reads = _call(sec_api, "/v1/jobs", sec_api.auth("bob"), BODY)
    assert (status, reads) == (401, 0)


def test_unsigned_webhook_body_is_never_read(sec_api: SecApi) -> None:
    status, body, reads = _call(sec_api, "/v1/replicate/webhook?job=abc", {}, b'{"id": "p", "status": "succeeded"}')
    assert status == 401 and "webhook-signature" in body["error"]["message"]
    assert reads == 0


def test_authenticated_requests_still_work(sec_api: SecApi) -> None:
    status, body, reads = _call(sec_api, "/v1/jobs", sec_api.auth("alice"), BODY)
    assert status == 202, body
    assert body["status"] == "queued" and reads >= 1
    # The role check still applies once the key is known (an ops key cannot create).
    status, body, _ = _call(sec_api, "/v1/jobs", sec_api.auth("ops"), BODY)
    assert status == 403, body
    # And through the ordinary client: a create, a read and a cancel.
    resp = sec_api.client.post("/v1/jobs", json=job_body(), headers=sec_api.auth("alice"))
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    assert sec_api.client.get(f"/v1/jobs/{job_id}", headers=sec_api.auth("alice")).status_code == 200
    resp = sec_api.client.post(f"/v1/jobs/{job_id}/cancel", headers=sec_api.auth("alice"))
    assert resp.status_code in (200, 202), resp.text
