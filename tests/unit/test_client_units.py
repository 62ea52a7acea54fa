"""The client's pure parts, no service: request building (targets, paths, query, Prefer), the wait
loop's step, error mapping, SSE parsing, run()'s outcome, sha256 checks, webhook verification, and
that importing the client pulls in nothing of the server."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys

import httpx
import pytest

from genqueue.client import calls
from genqueue.client.errors import (
    APIError,
    ChecksumMismatch,
    JobCanceledError,
    JobFailedError,
    NotFoundError,
    RateLimitError,
    ServerError,
    ValidationError,
    api_error,
)
from genqueue.client.files import Sha256Check
from genqueue.client.outcome import outputs_or_raise
from genqueue.client.sse import EventParser, job_event
from genqueue.client.types import Job
from genqueue.webhooks import (
    BadSecret,
    BadSignature,
    BadTimestamp,
    MissingHeaders,
    TimestampOutOfTolerance,
    verify,
)
from genqueue.worker.callbacks import signing

HEX = "43d5bce2e1c97fa1e7d8996187a85cd5c882787989091af3b135c7a16ca23b79"
FAKE_SECRET = "whsec_" + base64.b64encode(b"obviously fake client test secret").decode()


def _job(status: str, **extra: object) -> Job:
    return Job.from_json({"id": "a" * 32, "status": status, "outputs": [], **extra})


def test_first_argument_is_a_version_or_a_model_like_replicate_run() -> None:
    assert calls.target(f"owner/name:{HEX}", None) == {"version": f"owner/name:{HEX}"}
    assert calls.target(HEX, None) == {"version": HEX}
    assert calls.target("black-forest-labs/flux-schnell", None) == {"model": "black-forest-labs/flux-schnell"}
    assert calls.target(None, "me/my-deploy") == {"deployment": "me/my-deploy"}
    with pytest.raises(ValueError, match="either"):
        calls.target("owner/name", "me/my-deploy")
    with pytest.raises(ValueError, match="required"):
        calls.target(None, None)


def test_submit_call_carries_options_idempotency_and_prefer_wait() -> None:
    call = calls.submit(f"o/n:{HEX}", {"prompt": "x"}, {"priority": 7, "metadata": {"team": "a"},
                                                       "callback_events": ["running", "terminal"],
                                                       "idempotency_key": "k1"}, wait=60)
    assert call.method == "POST" and call.path == "/v1/jobs"
    assert call.json == {"version": f"o/n:{HEX}", "input": {"prompt": "x"}, "priority": 7,
                         "metadata": {"team": "a"}, "callback_events": ["running", "terminal"]}
    assert call.headers == {"Prefer": "wait=60", "Idempotency-Key": "k1"}
    assert call.read_timeout == 60 + calls.WAIT_MARGIN  # a held answer must not hit the read timeout
    assert calls.submit("o/n", {}, {}).headers == {} and calls.submit("o/n", {}, {}).read_timeout is None


def test_ids_are_quoted_so_they_cannot_reach_another_route() -> None:
    assert calls.get("../stats").path == "/v1/jobs/..%2Fstats"
    assert calls.cancel("a/b").path == "/v1/jobs/a%2Fb/cancel"
    assert calls.batch("x?y", "/results").path == "/v1/batches/x%3Fy/results"
    assert calls.output(_job("succeeded"), 2).path == f"/v1/jobs/{'a' * 32}/outputs/2"


def test_list_and_event_queries() -> None:
    call = calls.list_jobs("cur", status="failed", model=None, priority=3, metadata={"team": "a"}, limit=10,
                           include_input=True)
    assert call.params == (("limit", "10"), ("status", "failed"), ("priority", "3"), ("cursor", "cur"),
                           ("include", "input"), ("metadata.team", "a"))
    all_jobs = calls.events(None, status=["succeeded", "failed"], batch="b1", metadata={"k": "v"},
                            last_event_id="17-0")
    assert all_jobs.path == "/v1/events" and all_jobs.headers["Last-Event-ID"] == "17-0"
    assert all_jobs.params == (("status", "succeeded"), ("status", "failed"), ("batch", "b1"), ("metadata.k", "v"))
    assert calls.events("j1", status=(), batch=None, metadata=None, last_event_id=None).path == "/v1/jobs/j1/events"


def test_wait_step_is_the_most_the_api_allows_or_what_is_left() -> None:
    assert calls.wait_step(None) == 60
    assert calls.wait_step(600) == 60
    assert calls.wait_step(12.2) == 13
    assert calls.wait_step(0.01) == 1 and calls.wait_step(-3) == 1  # the header's minimum


def test_event_streams_resume_unless_the_jobs_stream_saw_its_end() -> None:
    assert calls.resume_events(one_job=False, last=_job("succeeded"))
    assert calls.resume_events(one_job=True, last=None)
    assert calls.resume_events(one_job=True, last=_job("running"))
    assert not calls.resume_events(one_job=True, last=_job("failed"))


def test_ndjson_body_is_lines_in_chunks() -> None:
    jobs = [{"model": "o/n", "input": {"i": i}} for i in range(calls.NDJSON_CHUNK_LINES + 3)]
    chunks = list(calls.ndjson(iter(jobs)))
    assert len(chunks) == 2
    lines = b"".join(chunks).decode().splitlines()
    assert [json.loads(line) for line in lines] == jobs


def test_error_bodies_become_exceptions_with_the_api_code_and_fields() -> None:
    body = {"error": {"code": "validation_error", "message": "request validation failed",
                      "fields": [{"field": "input.prompt", "reason": "is required"}]}}
    err = api_error(422, body)
    assert isinstance(err, ValidationError) and err.status == 422 and err.code == "validation_error"
    assert err.reasons("input.prompt") == ["is required"] and "input.prompt: is required" in str(err)
    limited = api_error(429, {"error": {"code": "quota_exceeded", "message": "max 3"}}, {"Retry-After": "2"})
    assert isinstance(limited, RateLimitError) and limited.code == "quota_exceeded" and limited.retry_after == 2.0
    assert isinstance(api_error(404, {"error": {"code": "not_found", "message": "no such job"}}), NotFoundError)
    proxy = api_error(502, None)
    assert isinstance(proxy, ServerError) and proxy.code == "http_502"
    assert type(api_error(418, {"error": {"code": "teapot", "message": ""}})) is APIError
    resp = httpx.Response(422, json=body)
    with pytest.raises(ValidationError):
        calls.check(resp)
    calls.check(httpx.Response(202, json={}))


def test_sse_parser_yields_job_events_and_keeps_the_last_id() -> None:
    job = {"id": "j" * 32, "status": "running", "outputs": []}
    text = (f"retry: 1000\n\n: keepalive\n\nid: 5-0\nevent: job.updated\ndata: {json.dumps(job)}\n\n"
            "event: other\ndata: {}\n\n")
    parser = EventParser()
    raws = [r for line in text.split("\n") if (r := parser.feed(line)) is not None]
    assert [(r.id, r.event) for r in raws] == [("5-0", "job.updated"), ("5-0", "other")]
    event = job_event(raws[0])
    assert event is not None and event.job.status == "running" and event.id == "5-0"
    assert job_event(raws[1]) is None


def test_run_outcome_is_outputs_or_the_jobs_error() -> None:
    out = {"index": 0, "url": "http://x/v1/jobs/a/outputs/0", "sha256": "00", "size": 1, "content_type": "image/png"}
    assert outputs_or_raise(_job("succeeded", outputs=[out]))[0].sha256 == "00"
    with pytest.raises(JobFailedError) as failed:
        outputs_or_raise(_job("failed", error={"code": "prediction_failed", "message": "NSFW content"}))
    assert failed.value.code == "prediction_failed" and failed.value.message == "NSFW content"
    with pytest.raises(JobCanceledError) as canceled:
        outputs_or_raise(_job("canceled"))
    assert canceled.value.code == "canceled"


def test_sha256_check() -> None:
    good = Sha256Check(hashlib.sha256(b"abc").hexdigest(), "here")
    good.update(b"ab")
    good.update(b"c")
    good.done()
    bad = Sha256Check(hashlib.sha256(b"abc").hexdigest(), "here")
    bad.update(b"abd")
    with pytest.raises(ChecksumMismatch, match="here"):
        bad.done()


def test_webhooks_verify_what_genqueue_signs_and_the_spec_test_vector() -> None:
    body = json.dumps({"id": "j1", "status": "succeeded"}).encode()
    headers = signing.headers(FAKE_SECRET, "msg_1", 1_700_000_000, body)
    assert verify(headers, body, FAKE_SECRET, now=1_700_000_010) == {"id": "j1", "status": "succeeded"}
    upper = {k.upper(): v for k, v in headers.items()}  # header names are case-insensitive
    assert verify(upper, body.decode(), FAKE_SECRET, now=1_700_000_010)["id"] == "j1"
    # The Standard Webhooks test vector (docs/replicate-api.md section 9), a rotation's two entries.
    vector = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
              "webhook-signature": "v1,bm9wZQ== v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
    assert verify(vector, b'{"test": 2432232314}', "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                  now=1614265330) == {"test": 2432232314}


def test_webhooks_refusals_name_their_reason() -> None:
    body = b'{"id": "j1"}'
    headers = signing.headers(FAKE_SECRET, "msg_1", 1_700_000_000, body)
    with pytest.raises(MissingHeaders, match="webhook-signature"):
        verify({k: v for k, v in headers.items() if k != "webhook-signature"}, body, FAKE_SECRET, now=1_700_000_000)
    with pytest.raises(BadTimestamp):
        verify({**headers, "webhook-timestamp": "soon"}, body, FAKE_SECRET, now=1_700_000_000)
    with pytest.raises(TimestampOutOfTolerance, match="ago"):
        verify(headers, body, FAKE_SECRET, now=1_700_000_301)
    with pytest.raises(TimestampOutOfTolerance, match="future"):
        verify(headers, body, FAKE_SECRET, now=1_699_999_000)
    assert verify(headers, body, FAKE_SECRET, now=1_700_000_900, tolerance=1000) == {"id": "j1"}
    with pytest.raises(BadSignature):
        verify(headers, b'{"id": "j2"}', FAKE_SECRET, now=1_700_000_000)
    other = "whsec_" + base64.b64encode(b"another obviously fake secret").decode()
    with pytest.raises(BadSignature):
        verify(headers, body, other, now=1_700_000_000)
    with pytest.raises(BadSecret):
        verify(headers, body, "whsec_", now=1_700_000_000)


def test_the_client_imports_nothing_of_the_server() -> None:
    code = ("import sys, genqueue.client, genqueue.webhooks; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'sqlalchemy', 'celery', 'redis', "
            "'starlette', 'boto3', 'pydantic') or (m.startswith('genqueue.') and m.split('.')[1] not in "
            "('client', 'webhooks'))); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out
