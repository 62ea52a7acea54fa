"""The pure parts of callbacks: the retry schedule (24 h without waiting), Standard Webhooks signing as
the `standardwebhooks` package verifies it (not our code), the callback URL rule, which status
changes are events."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet, MultiFernet
from standardwebhooks import Webhook, WebhookVerificationError

from genqueue.intake.callback_url import problem
from genqueue.models.callbacks import RUNNING_EVENT, TERMINAL_EVENT, event_for
from genqueue.models.keys import new_callback_secret, open_callback_secret
from genqueue.models.status import JobStatus
from genqueue.worker.callbacks import signing
from genqueue.worker.callbacks.schedule import CALLBACK_FAILED, Backoff, after_attempt

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FAKE_SECRET = "whsec_" + base64.b64encode(b"obviously fake test signing secret").decode()


def test_delay_doubles_from_first_up_to_the_cap_with_bounded_jitter() -> None:
    b = Backoff(first=5, cap=3600)
    assert [b.delay(n) for n in range(1, 6)] == [5, 10, 20, 40, 80]
    assert b.delay(12) == 3600 and b.delay(500) == 3600
    assert b.delay(1, jitter=0.0) == pytest.approx(4.0) and b.delay(1, jitter=0.999999) == pytest.approx(6.0)


@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999])
def test_a_dead_receiver_is_retried_for_at_least_24_hours_then_given_up(jitter: float) -> None:
    """Walk the schedule with a simulated clock: every failed attempt before 24 h schedules another;
    the first failure at or past 24 h after the event gives up with callback_failed."""
    b = Backoff()
    now, attempt, outcomes = T0, 1, []
    while True:
        out = after_attempt(500 if attempt % 2 else None, attempt, T0, now, b, jitter)
        outcomes.append(out)
        if out.state != "pending":
            break
        assert out.retry_at is not None and out.retry_at > now
        now, attempt = out.retry_at, attempt + 1
    assert outcomes[-1].state == "failed" and outcomes[-1].error_code == CALLBACK_FAILED
    assert now - T0 >= timedelta(hours=24)  # the giving-up attempt ran 24 h or more after the event
    assert now - T0 < timedelta(hours=24) + timedelta(seconds=b.cap * 1.2 + 1)  # and not much later
    assert 25 <= attempt <= 45, attempt


def test_a_2xx_is_delivered_anything_else_is_retried() -> None:
    b = Backoff(first=1)
    for code in (200, 201, 204, 299):
        assert after_attempt(code, 1, T0, T0, b).state == "delivered"
    for code in (None, 100, 301, 302, 400, 404, 410, 429, 500, 503):
        out = after_attempt(code, 3, T0, T0 + timedelta(seconds=9), b)
        assert out.state == "pending" and out.retry_at == T0 + timedelta(seconds=9 + 4), code


def test_signature_is_what_standardwebhooks_verifies_and_nothing_else() -> None:
    body = json.dumps({"id": "job1", "status": "succeeded"}).encode()
    ts = int(datetime.now(UTC).timestamp())
    headers = signing.headers(FAKE_SECRET, "msg_abc", ts, body)
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(FAKE_SECRET).verify(body, headers) == {"id": "job1", "status": "succeeded"}
    other = "whsec_" + base64.b64encode(b"another obviously fake secret").decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(FAKE_SECRET).verify(body + b" ", headers)
    with pytest.raises(WebhookVerificationError):  # the same id is signed into every attempt
        Webhook(FAKE_SECRET).verify(body, {**headers, "webhook-id": "msg_other"})


def test_key_secret_is_sealed_and_opens_for_signing() -> None:
    cipher = MultiFernet([Fernet(Fernet.generate_key())])
    secret, sealed = new_callback_secret(cipher)
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert secret not in sealed and secret[6:] not in sealed
    assert open_callback_secret(cipher, sealed) == secret
    body = b'{"x":1}'
    Webhook(secret).verify(body, signing.headers(secret, "msg_1", int(datetime.now(UTC).timestamp()), body))


@pytest.mark.parametrize(("url", "reason"), [
    ("http://127.0.0.1:8080/hook", "loopback or private address"),
    ("http://[::1]/hook", "loopback or private address"),
    ("https://10.1.2.3/hook", "loopback or private address"),
    ("https://169.254.169.254/latest/meta-data", "loopback or private address"),
    ("http://[::ffff:192.168.1.1]/", "loopback or private address"),
    ("https://localhost/hook", "loopback or private host"),
    ("https://api.localhost/hook", "loopback or private host"),
    ("https://printer.local/hook", "loopback or private host"),
    ("https://intranet/hook", "loopback or private host"),
    ("ftp://example.com/hook", "absolute http(s) URL"),
    ("not a url", "absolute http(s) URL"),
    ("/relative/path", "absolute http(s) URL"),
    ("https://user:pw@example.com/hook", "credentials"),
    ("https://example.com/" + "a" * 2000, "at most 2000"),
])
def test_callback_url_rule_refuses(url: str, reason: str) -> None:
    found = problem(url, allow_private=False)
    assert found is not None and reason in found


def test_callback_url_rule_accepts_public_and_private_when_allowed() -> None:
    assert problem("https://hooks.example.com/genqueue?token=abc", allow_private=False) is None
    assert problem("http://93.184.216.34:8443/x", allow_private=False) is None
    assert problem("http://127.0.0.1:8080/hook", allow_private=True) is None
    assert problem("ftp://127.0.0.1/", allow_private=True) is not None  # the scheme rule always holds


def test_events_are_running_and_the_terminal_statuses() -> None:
    assert event_for(JobStatus.RUNNING) == RUNNING_EVENT
    assert {event_for(s) for s in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)} == {TERMINAL_EVENT}
    assert event_for(JobStatus.STORING) is None and event_for(JobStatus.SUBMITTING) is None and event_for(None) is None
