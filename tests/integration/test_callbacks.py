"""Callbacks through the real outbox (SQLite and PostgreSQL) and a real receiver on loopback, with the
worker's services called in-process and a clock the test moves (no sleeping through the schedule):
the row is written with the status change or not at all; the sweeper dispatches it; attempts are
signed (verified by the `standardwebhooks` package), retried with the same id and body, recorded, and
given up after 24 h; a worker that dies mid-attempt only delays it; the secret is never in SQL or logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from standardwebhooks import Webhook

from genqueue.intake import Intake, JobRequest
from genqueue.intake.service import CallbackKey
from genqueue.models import batches
from genqueue.models import callbacks as outbox
from genqueue.models.keys import Role, create_key, new_callback_secret
from genqueue.models.status import ErrorCode
from genqueue.models.tables import CallbackDelivery, Job
from genqueue.worker.context import WorkerContext
from genqueue.worker.lifecycle.decision import fail
from genqueue.worker.services import callbacks as service
from genqueue.worker.services.sweep import sweep
from genqueue.worker.services.writes import load, write
from tests.support.callback_receiver import CallbackReceiver
from tests.support.worker_ctx import VERSION, recorded, worker_context


class MovableClock:
    """Real time plus whatever the test has skipped."""

    def __init__(self) -> None:
        self.skipped = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.skipped

    def skip(self, seconds: float) -> None:
        self.skipped += timedelta(seconds=seconds)


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    r = CallbackReceiver(fail=5, drop=2)
    yield r
    r.close()


@pytest.fixture
def ctx(tmp_path: Path, db_url: str, redis_url: str) -> WorkerContext:
    c = worker_context(tmp_path, db_url, redis_url, GENQUEUE_CALLBACK_ALLOW_PRIVATE="true",
                       GENQUEUE_CALLBACK_RETRY_FIRST="1", GENQUEUE_CALLBACK_RETRY_MAX="2")
    c.clock = MovableClock()  # type: ignore[assignment]
    return c


def _key(ctx: WorkerContext) -> tuple[str, str]:
    with ctx.sessions.begin() as s:
        key, _ = create_key(s, "svc", Role.SUBMIT)
        secret, key.callback_secret_sealed = new_callback_secret(ctx.cipher)
        return key.id, secret


def _job(ctx: WorkerContext, key_id: str, url: str, events: list[str] | None = None) -> str:
    intake = Intake(ctx.sessions, ctx.cipher, frozenset({"api_key"}), lambda ids: None, 3600,
                    callback_allow_private=True)
    req = JobRequest.model_validate({"version": VERSION, "input": {"prompt": "p", "api_key": "sk_test_fake_x"},
                                     "callback_url": url, "callback_events": events})
    [job], _ = intake.submit([req], api_key_id=key_id, callback_key=CallbackKey(can_sign=True))
    return job.id


def _finish(ctx: WorkerContext, job_id: str) -> None:
    with ctx.sessions.begin() as s:
        job = load(s, job_id)
        assert job is not None
        assert write(s, job_id, fail(job, ErrorCode.DEADLINE_EXCEEDED, "deadline", ctx.clock.now()))


def _deliveries(ctx: WorkerContext, job_id: str) -> list[CallbackDelivery]:
    with ctx.sessions() as s:
        return list(s.scalars(select(CallbackDelivery).where(CallbackDelivery.job_id == job_id)))


def test_outbox_row_commits_with_the_status_change_or_not_at_all(ctx: WorkerContext,
                                                                 receiver: CallbackReceiver) -> None:
    key_id, _ = _key(ctx)
    job_id = _job(ctx, key_id, receiver.url())
    with pytest.raises(RuntimeError), ctx.sessions.begin() as s:  # the step's transaction fails after the write
        job = load(s, job_id)
        assert job is not None
        assert write(s, job_id, fail(job, ErrorCode.DEADLINE_EXCEEDED, "deadline", ctx.clock.now()))
        assert len(s.execute(select(CallbackDelivery.id).where(CallbackDelivery.job_id == job_id)).all()) == 1
        raise RuntimeError("crash before commit")
    assert _deliveries(ctx, job_id) == []
    _finish(ctx, job_id)
    [d] = _deliveries(ctx, job_id)
    assert (d.event, d.state, d.url, d.attempts, d.api_key_id) == ("terminal", "pending", receiver.url(), 0, key_id)
    # A job with no callback URL costs no row.
    other = _job(ctx, key_id, receiver.url())
    with ctx.sessions.begin() as s:
        s.execute(text("UPDATE jobs SET callback_url = NULL WHERE id = :id"), {"id": other})
    _finish(ctx, other)
    assert _deliveries(ctx, other) == []


def test_500s_then_drops_then_200_one_signed_body_same_id_every_attempt(
        ctx: WorkerContext, receiver: CallbackReceiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key_id, secret = _key(ctx)
    job_id = _job(ctx, key_id, receiver.url())
    _finish(ctx, job_id)
    sweep(ctx)
    assert recorded(ctx).ids("callback") == [job_id]
    sweep(ctx)  # dispatched already: not sent again while its message may be queued
    assert recorded(ctx).ids("callback") == [job_id]
    clock: MovableClock = ctx.clock  # type: ignore[assignment]
    for _ in range(8):
        retry = service.deliver_due(ctx, job_id)
        if retry is None:
            break
        assert 0 < retry <= 2 * 1.2
        assert service.deliver_due(ctx, job_id) is None  # not due yet: a duplicate message does nothing
        clock.skip(retry)
    seen = receiver.requests()
    assert [s.answer for s in seen] == ["500"] * 5 + ["drop"] * 2 + ["200"]
    assert len({s.headers["webhook-id"] for s in seen}) == 1 and len({s.body for s in seen}) == 1
    for s in seen:
        payload = Webhook(secret).verify(s.body, s.headers)
        assert payload["id"] == job_id and payload["status"] == "failed"
        assert payload["input"]["api_key"] == "***" and s.headers["genqueue-event"] == "terminal"
    [d] = _deliveries(ctx, job_id)
    assert (d.state, d.attempts, d.id) == ("delivered", 8, seen[0].headers["webhook-id"])
    with ctx.sessions() as s:
        [(_, attempts)] = outbox.for_job(s, job_id)
    assert [a.status_code for a in attempts] == [500] * 5 + [None] * 2 + [200]
    assert all(a.latency_ms >= 0 for a in attempts) and attempts[5].error
    assert service.deliver_due(ctx, job_id) is None and len(receiver.requests()) == 8  # delivered: done
    # The secret: never in the database in the clear (nor its key bytes), never in a log line.
    with ctx.sessions() as s:
        dump = " ".join(str(row) for table in ("api_keys", "jobs", "callback_deliveries", "callback_attempts")
                        for row in s.execute(text(f"SELECT * FROM {table}")).all())
    assert secret not in dump and secret.removeprefix("whsec_") not in dump
    assert secret.removeprefix("whsec_") not in caplog.text and "callback" in caplog.text


def test_running_event_only_when_asked_and_a_dead_receiver_is_given_up_after_24h(
        ctx: WorkerContext, receiver: CallbackReceiver) -> None:
    receiver.fail = 10**6  # always 500
    key_id, _ = _key(ctx)
    job_id = _job(ctx, key_id, receiver.url(), events=["running", "terminal"])
    plain = _job(ctx, key_id, receiver.url())
    from genqueue.models.status import JobStatus
    from genqueue.worker.lifecycle.decision import Decision
    for jid in (job_id, plain):
        with ctx.sessions.begin() as s:
            assert write(s, jid, Decision(expect=(JobStatus.QUEUED,), to=JobStatus.SUBMITTING))
            assert write(s, jid, Decision(expect=(JobStatus.SUBMITTING,), to=JobStatus.RUNNING))
    assert [d.event for d in _deliveries(ctx, job_id)] == ["running"] and _deliveries(ctx, plain) == []
    clock: MovableClock = ctx.clock  # type: ignore[assignment]
    assert service.deliver_due(ctx, job_id) is not None
    clock.skip(24 * 3600 + 1)
    assert service.deliver_due(ctx, job_id) is None
    [d] = _deliveries(ctx, job_id)
    assert (d.state, d.error_code, d.attempts) == ("failed", "callback_failed", 2)
    with ctx.sessions() as s:
        counts = outbox.counts(s)
    assert counts["failed"] == 1 and counts["failed_attempts"] == 2


def test_a_worker_dying_mid_attempt_holds_the_row_only_until_its_lease_ends(
        ctx: WorkerContext, receiver: CallbackReceiver) -> None:
    receiver.fail = receiver.drop = 0
    key_id, secret = _key(ctx)
    job_id = _job(ctx, key_id, receiver.url())
    _finish(ctx, job_id)
    clock: MovableClock = ctx.clock  # type: ignore[assignment]
    [d] = _deliveries(ctx, job_id)
    with ctx.sessions.begin() as s:  # a worker claims the attempt, then is SIGKILLed before it posts
        assert outbox.claim(s, d.id, clock.now(), service.LEASE) is not None
    assert service.deliver_due(ctx, job_id) is None and receiver.requests() == []  # held by the lease
    clock.skip(service.LEASE.total_seconds() + 1)
    sweep(ctx)
    assert recorded(ctx).ids("callback") == [job_id]  # the sweeper hands it on
    assert service.deliver_due(ctx, job_id) is None
    [seen] = receiver.accepted()
    Webhook(secret).verify(seen.body, seen.headers)
    [d] = _deliveries(ctx, job_id)
    assert (d.state, d.attempts) == ("delivered", 2)  # the lost attempt counts


def test_a_private_destination_is_refused_at_delivery_too(tmp_path: Path, db_url: str, redis_url: str,
                                                          receiver: CallbackReceiver) -> None:
    """A row whose URL is private (accepted while CALLBACK_ALLOW_PRIVATE was on) gets no request once it
    is off: the attempt is recorded as refused, with no status code, and retried on the schedule."""
    ctx = worker_context(tmp_path, db_url, redis_url)
    key_id, _ = _key(ctx)
    job_id = _job(ctx, key_id, receiver.url())
    _finish(ctx, job_id)
    assert service.deliver_due(ctx, job_id) is not None
    assert receiver.requests() == []
    with ctx.sessions() as s:
        [(d, [attempt])] = outbox.for_job(s, job_id)
    assert d.state == "pending" and attempt.status_code is None
    assert "loopback or private" in (attempt.error or "")


def test_a_finished_batch_calls_back_once_through_the_outbox(ctx: WorkerContext) -> None:
    """A batch whose every job is terminal queues its callback in the transaction that records it
    finished; it is delivered like a job's (signed, retried, same id) with the batch JSON as body."""
    receiver = CallbackReceiver(fail=1, drop=0)
    try:
        key_id, secret = _key(ctx)
        with ctx.sessions.begin() as s:
            batch_id = batches.create_batch(s, api_key_id=key_id, callback_url=receiver.url("/batch"), meta=None).id
        jobs = [_job(ctx, key_id, receiver.url()) for _ in range(2)]
        with ctx.sessions.begin() as s:
            s.execute(update(Job).where(Job.id.in_(jobs)).values(batch_id=batch_id, callback_url=None))
            batches.seal(s, batch_id, lines=2, rejected=0, truncated=False)
        _finish(ctx, jobs[0])
        sweep(ctx)
        assert recorded(ctx).ids("callback") == []  # one job still active: the batch is not finished
        _finish(ctx, jobs[1])
        sweep(ctx)  # closes the batch (its callback row), then a later sweep dispatches it
        sweep(ctx)
        assert recorded(ctx).ids("callback") == [batch_id]
        clock: MovableClock = ctx.clock  # type: ignore[assignment]
        retry = service.deliver_due(ctx, batch_id)  # 500 first
        assert retry is not None
        clock.skip(retry)
        assert service.deliver_due(ctx, batch_id) is None  # 200: delivered
        seen = receiver.requests()
        assert [s.answer for s in seen] == ["500", "200"] and len({s.headers["webhook-id"] for s in seen}) == 1
        payload = Webhook(secret).verify(seen[-1].body, seen[-1].headers)
        assert payload["id"] == batch_id and payload["status"] == "completed" and payload["counts"]["failed"] == 2
        assert seen[-1].headers["genqueue-event"] == "batch"
        sweep(ctx)
        assert recorded(ctx).ids("callback") == [batch_id]  # finished once, called back once
    finally:
        receiver.close()
