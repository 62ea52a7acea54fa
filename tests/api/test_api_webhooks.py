"""POST /v1/replicate/webhook: signature checks, what is handed to the workers, and what never is."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from api_helpers import SECRET, Api, MakeApi
from standardwebhooks import Webhook

from genqueue.api.webhook_auth import WebhookRejected, WebhookSecret, verify
from genqueue.core.settings import Settings

# The Standard Webhooks specification's own example secret (also the simulator's default): fake.
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
JOB = "0190f0e0a0b0c0d0e0f0a0b0c0d0e0f0"


def prediction(status: str = "succeeded", **extra: Any) -> dict[str, Any]:
    return {"id": "pred123", "status": status, "version": "v", "input": {"prompt": "p", "api_key": SECRET},
            "logs": "step 1\n", "output": "https://replicate.delivery/x/out-0.png", "error": None,
            "metrics": {"predict_time": 1.5, "total_time": 1.9}, "created_at": "2026-11-28T00:00:00Z",
            "completed_at": "2026-11-28T00:00:02Z", "urls": {"get": "https://api.replicate.com/v1/predictions/pred123"},
            **extra}


def signed(body: bytes, secret: str = WHSEC, msg_id: str = "msg_1", ts: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if ts is None else ts
    sig = Webhook(secret).sign(msg_id, datetime.fromtimestamp(stamp, UTC), body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "content-type": "application/json",
            "webhook-signature": sig}


@pytest.fixture
def hook_api(make_api: MakeApi, sqlite_url: str) -> Api:
    return make_api(sqlite_url, GENQUEUE_WEBHOOK_SECRET=WHSEC)


def post(api: Api, body: bytes, headers: dict[str, str], job: str = JOB) -> Any:
    return api.client.post(f"/v1/replicate/webhook?job={job}", content=body, headers=headers)


def test_verify_rejects_tampering_age_and_missing_headers() -> None:
    body = b'{"id": "a"}'
    headers = signed(body)
    verify(WHSEC, headers, body)
    with pytest.raises(WebhookRejected, match="signature check failed"):
        verify(WHSEC, headers, body + b" ")
    with pytest.raises(WebhookRejected, match="too old"):
        verify(WHSEC, signed(body, ts=int(time.time()) - 600), body)
    with pytest.raises(WebhookRejected, match="missing"):
        verify(WHSEC, {k: v for k, v in headers.items() if k != "webhook-signature"}, body)
    # During a rotation the header lists several signatures: one valid entry is enough.
    rotated = dict(headers, **{"webhook-signature": "v1,AAAA " + headers["webhook-signature"]})
    verify(WHSEC, rotated, body)


def test_terminal_push_is_enqueued_without_input_or_logs(hook_api: Api) -> None:
    body = json.dumps(prediction()).encode()
    r = post(hook_api, body, signed(body))
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": True}
    [(job, pushed)] = hook_api.enqueuer.observed
    assert job == JOB
    assert pushed["status"] == "succeeded" and pushed["output"].endswith("out-0.png")
    assert pushed["metrics"] == {"predict_time": 1.5, "total_time": 1.9}
    assert "input" not in pushed and "logs" not in pushed
    assert SECRET not in json.dumps(hook_api.enqueuer.observed)


def test_non_terminal_push_is_acknowledged_and_ignored(hook_api: Api) -> None:
    body = json.dumps(prediction("processing", output=None)).encode()
    r = post(hook_api, body, signed(body))
    assert r.status_code == 200 and r.json() == {"accepted": False}
    assert hook_api.enqueuer.observed == []


@pytest.mark.parametrize("case", ["wrong_secret", "tampered", "old", "unsigned"])
def test_bad_signatures_get_401_and_enqueue_nothing(hook_api: Api, case: str) -> None:
    body = json.dumps(prediction()).encode()
    headers = {
        "wrong_secret": signed(body, secret="whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"),
        "tampered": signed(body.replace(b"succeeded", b"failed")),
        "old": signed(body, ts=int(time.time()) - 3600),
        "unsigned": {"content-type": "application/json"},
    }[case]
    r = post(hook_api, body, headers)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert hook_api.enqueuer.observed == [] and hook_api.enqueuer.polled == []


def test_bad_job_id_and_bad_body_name_the_field(hook_api: Api) -> None:
    body = json.dumps(prediction()).encode()
    r = post(hook_api, body, signed(body), job="../etc")
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["field"] == "job"
    junk = b"[1, 2]"
    r = post(hook_api, junk, signed(junk))
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["field"] == "body"


def test_huge_data_uri_output_becomes_a_poll_not_a_broker_message(hook_api: Api) -> None:
    body = json.dumps(prediction(output="data:image/png;base64," + "A" * 400_000)).encode()
    r = post(hook_api, body, signed(body))
    assert r.status_code == 200
    assert hook_api.enqueuer.polled == [JOB] and hook_api.enqueuer.observed == []


def test_no_secret_configured_and_no_token_is_503_not_500(make_api: MakeApi, sqlite_url: str) -> None:
    api = make_api(sqlite_url, REPLICATE_API_TOKEN="")
    body = json.dumps(prediction()).encode()
    r = post(api, body, signed(body))
    assert r.status_code == 503
    assert api.enqueuer.observed == []


def test_fetched_secret_is_cached_and_refetched_after_a_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    secrets = iter(["whsec_old", "whsec_new"])

    def fetch() -> str:
        calls.append(1)
        return next(secrets)

    provider = WebhookSecret(Settings(), fetch=fetch)
    assert provider.get() == provider.get() == "whsec_old"
    assert len(calls) == 1
    assert provider.refresh_after_mismatch() is False  # fetched moments ago: no refetch storm
    monkeypatch.setattr("genqueue.api.webhook_auth.REFETCH_SECONDS", 0.0)
    assert provider.refresh_after_mismatch() is True
    assert provider.get() == "whsec_new"
