"""The callback step: claim a job's due deliveries, POST each (signed, to a checked and pinned address,
with short timeouts), record the attempt and its outcome (`worker.callbacks.schedule`).

It runs on its own queue (`genqueue.callbacks`, read last), so a slow or dead receiver delays other
callbacks at most, never a job's own steps; a job's progress never waits for its callback: the outbox
row was written with the status change, and that step is long finished.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
from cryptography.fernet import InvalidToken
from sqlalchemy import Row, select
from sqlalchemy.orm import Session, selectinload

from genqueue.intake import callback_url
from genqueue.models import batches
from genqueue.models import callbacks as outbox
from genqueue.models.keys import open_callback_secret
from genqueue.models.tables import Batch, Job
from genqueue.views.batch import batch_view
from genqueue.views.job import job_view
from genqueue.worker.callbacks import signing
from genqueue.worker.callbacks.schedule import Backoff, Outcome, after_attempt
from genqueue.worker.celery_app import MAX_COUNTDOWN
from genqueue.worker.context import WorkerContext
from genqueue.worker.egress import DEFAULT_PORTS, is_public
from genqueue.worker.transport import pinned

log = logging.getLogger(__name__)

# One attempt: 5 s to connect, 10 s per read or write. A worker that dies mid-attempt holds the row
# until LEASE passes, then the sweeper hands it to another.
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
LEASE = timedelta(seconds=45)
USER_AGENT = "genqueue-callbacks/1"


class Refused(Exception):
    """The URL or its addresses may not be called (SSRF rule): an attempt with no answer."""


def backoff(ctx: WorkerContext) -> Backoff:
    return Backoff(first=ctx.settings.callback_retry_first, cap=ctx.settings.callback_retry_max)


def deliver_due(ctx: WorkerContext, owner: str) -> float | None:
    """Try every due delivery of the job (or batch) once; the countdown of the earliest retry, if any."""
    with ctx.sessions() as session:
        ids = outbox.due_for_job(session, owner, ctx.clock.now())
    retries = [r for r in (deliver_one(ctx, d) for d in ids) if r is not None]
    return min(retries) if retries else None


def _body(ctx: WorkerContext, session: Session, row: Row[Any]) -> str:
    """The job JSON as a submit key sees it (secrets masked, no storage URIs); output URLs on the API's
    public base URL when GENQUEUE_WEBHOOK_URL names it, else relative paths. A batch's: the batch JSON
    of `GET /v1/batches/{id}` (its results file is one request away)."""
    if row.batch_id is not None:
        found = session.get(Batch, row.batch_id)
        if found is None:
            return "{}"
        counts = batches.counts(session, [found.id]).get(found.id, {})
        return batch_view(found, counts, ctx.clock.now()).model_dump_json()
    job_id = row.job_id
    job = session.scalar(select(Job).where(Job.id == job_id).options(selectinload(Job.outputs)))
    if job is None:
        return "{}"
    base = ctx.settings.webhook_url or ""
    view = job_view(job, lambda jid, index: f"{base}/v1/jobs/{jid}/outputs/{index}")
    return view.model_dump_json()


def _address(url: httpx.URL, allow_private: bool) -> tuple[str, int, str]:
    """(host on the wire, port, the checked address to connect to)."""
    reason = callback_url.problem(str(url), allow_private)
    if reason is not None:
        raise Refused(f"callback URL {reason}")
    host = url.raw_host.decode("ascii")
    port = url.port or DEFAULT_PORTS[url.scheme]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Refused("cannot resolve the callback host") from exc
    addresses = list(dict.fromkeys(str(i[4][0]) for i in infos))
    if not addresses:
        raise Refused("cannot resolve the callback host")
    if not allow_private and not all(is_public(a) for a in addresses):
        raise Refused("the callback host resolves to a non-public address")
    return host, port, addresses[0]


def _post(ctx: WorkerContext, url_text: str, secret: str, msg_id: str, event: str, body: str,
          now: datetime) -> tuple[int | None, str | None]:
    """(status code or None, error) of one signed POST."""
    url = httpx.URL(url_text)
    host, port, address = _address(url, ctx.settings.callback_allow_private)
    data = body.encode()
    headers = {"content-type": "application/json", "user-agent": USER_AGENT, "genqueue-event": event,
               **signing.headers(secret, msg_id, int(now.timestamp()), data)}
    request = ctx.callback_http.build_request("POST", url, content=data, headers=headers, timeout=TIMEOUT)
    try:
        with pinned(host, port, address):
            # Streamed and closed unread: only the status matters, and a receiver answering with an
            # endless body must not fill this worker's memory.
            response = ctx.callback_http.send(request, stream=True, follow_redirects=False)
    except httpx.TransportError as exc:
        return None, type(exc).__name__
    response.close()
    return response.status_code, None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"


def deliver_one(ctx: WorkerContext, delivery_id: str) -> float | None:
    """One attempt of one delivery (if it is due and nobody holds it); the seconds until its retry."""
    now = ctx.clock.now()
    with ctx.sessions.begin() as session:
        row = outbox.claim(session, delivery_id, now, LEASE)
        if row is None:
            return None
        body = row.body
        if body is None:
            body = outbox.freeze_body(session, row.id, _body(ctx, session, row))
        sealed = outbox.sealed_secret(session, row.api_key_id)
    started = time.monotonic()
    try:
        if sealed is None:
            raise Refused("the job's API key has no callback signing secret")
        try:
            secret = signing_secret(ctx, sealed)
        except InvalidToken:
            raise Refused("the signing secret does not open with SECRETS_KEY") from None
        status, error = _post(ctx, row.url, secret, row.id, row.event, body, ctx.clock.now())
    except Refused as exc:
        status, error = None, str(exc)
    latency_ms = round((time.monotonic() - started) * 1000, 3)
    done = ctx.clock.now()
    outcome = after_attempt(status, row.attempts, row.created_at, done, backoff(ctx), random.random())
    return _record(ctx, row.id, row.job_id or row.batch_id,
                   outbox.AttemptResult(row.attempts, done, status, latency_ms, error), outcome, done)


def signing_secret(ctx: WorkerContext, sealed: str) -> str:
    return open_callback_secret(ctx.cipher, sealed)


def _record(ctx: WorkerContext, delivery_id: str, job_id: str, result: outbox.AttemptResult, outcome: Outcome,
            now: datetime) -> float | None:
    countdown = None
    if outcome.retry_at is not None:
        countdown = max(0.0, (outcome.retry_at - now).total_seconds())
    # A retry due within the broker's countdown range is sent as a delayed message (the row records
    # it as dispatched, so the sweeper leaves it alone); a later one is left to the sweeper.
    carried = countdown is not None and countdown <= MAX_COUNTDOWN
    with ctx.sessions.begin() as session:
        outbox.record(session, delivery_id, result, outcome.state, retry_at=outcome.retry_at,
                      error_code=outcome.error_code, dispatched_at=outcome.retry_at if carried else None)
    level = logging.WARNING if outcome.state == "failed" else logging.INFO
    log.log(level, "job=%s callback %s attempt=%d status=%s %s%s", job_id, delivery_id, result.attempt,
            result.status_code, outcome.state, f" ({result.error})" if result.error else "")
    return countdown if carried else None

