"""PostgreSQL going away in the middle of a step, against real SQL (through a loopback proxy that
the test takes down), a real simulator and real Redis: the step's own retry carries on, rather than
a retry that drops itself and leaves the job to the sweeper minutes later."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from genqueue.models.tables import Job
from genqueue.simulator.config import SimConfig
from genqueue.simulator.server import SimHandle, run_in_thread
from genqueue.worker import tasks
from genqueue.worker.lifecycle.decision import Next, Step
from genqueue.worker.lifecycle.policy import Polling
from genqueue.worker.services.submit import submit
from tests.support.tcpproxy import TcpProxy
from tests.support.worker_ctx import new_job, worker_context


@pytest.fixture
def sim() -> Iterator[SimHandle]:
    # Prefer: wait holds the create open for the whole 1.5 s prediction: time to cut the database.
    handle = run_in_thread(SimConfig(start_delay=0.0, predict_seconds=1.5))
    try:
        yield handle
    finally:
        handle.stop()


def _ctx(tmp_path: Path, db_url: str, redis_url: str, sim: SimHandle) -> Any:  # Any: a recording enqueuer
    # A threads-pool worker's policy, with the model known to take 1.5 s: the create holds Prefer: wait.
    ctx = worker_context(tmp_path, db_url, redis_url, threads=True, REPLICATE_BASE_URL=f"{sim.base_url}/v1",
                         OUTPUT_ALLOWED_HOSTS=urlsplit(sim.base_url).netloc, OUTPUT_ALLOW_PRIVATE=True)
    ctx.durations.observe("jigsawstack/image-generation", 1.5)
    # The strategy whose steps copy outputs inline (the path these outages hit).
    ctx.policy = dataclasses.replace(ctx.policy, follow=Polling())
    assert ctx.policy.create_wait(ctx.durations.expected("jigsawstack/image-generation")) == 3
    return ctx


def _outage(proxy: TcpProxy, start: float, length: float) -> list[threading.Timer]:
    timers = [threading.Timer(start, proxy.down), threading.Timer(start + length, proxy.start)]
    for t in timers:
        t.start()
    return timers


def test_create_answer_is_recorded_through_an_outage(tmp_path: Path, pg_via_proxy: tuple[str, TcpProxy],
                                                      redis_url: str, sim: SimHandle) -> None:
    db_url, proxy = pg_via_proxy
    ctx = _ctx(tmp_path, db_url, redis_url, sim)
    job_id = new_job(ctx, prompt="outage", api_key="sk_fake_not_real")
    timers = _outage(proxy, start=0.5, length=2.5)  # down while the create waits, back ~1.5 s after it answers

    nxt = submit(ctx, job_id, dispatched=True)
    for t in timers:
        t.join()

    assert nxt == Next(Step.STORE, inline=True)  # the prediction succeeded during the wait
    with ctx.sessions() as s:
        job = s.scalars(select(Job).where(Job.id == job_id)).one()
        assert job.status == "storing" and job.prediction_id and job.attempts == 1
    assert len(sim.state.store.records) == 1  # recorded, not created again


def test_copy_that_hits_an_outage_is_retried_as_a_store_step(tmp_path: Path, pg_via_proxy: tuple[str, TcpProxy],
                                                              redis_url: str, sim: SimHandle) -> None:
    db_url, proxy = pg_via_proxy
    ctx = _ctx(tmp_path, db_url, redis_url, sim)
    job_id = new_job(ctx, prompt="outage", api_key="sk_fake_not_real")
    nxt = submit(ctx, job_id, dispatched=True)
    assert nxt == Next(Step.STORE, inline=True)
    proxy.down()  # the copy's success cannot be recorded
    try:
        tasks.follow_up(ctx, job_id, nxt)
    finally:
        proxy.start()
    assert ctx.enqueuer.sent == [("store", job_id)]
    ctx.enqueuer.sent.clear()
    tasks.follow_up(ctx, job_id, Next(Step.STORE, inline=True))  # the retried step finishes the job
    assert ctx.enqueuer.sent == []
    with ctx.sessions() as s:
        assert s.scalars(select(Job.status).where(Job.id == job_id)).one() == "succeeded"


def test_an_unanswered_create_is_recorded_through_an_outage(tmp_path: Path, pg_via_proxy: tuple[str, TcpProxy],
                                                             redis_url: str) -> None:
    """The create answers 5xx while PostgreSQL is away: that it is over (and must be looked up, not
    waited for) is recorded once the database is back, in place. A re-sent submit would find the
    claim's create window (~47 s) still open and wait it out."""
    db_url, proxy = pg_via_proxy
    slow_5xx = run_in_thread(SimConfig(fault_slow=1.0, slow_seconds=1.5, fault_5xx=1.0))
    try:
        ctx = worker_context(tmp_path, db_url, redis_url, REPLICATE_BASE_URL=f"{slow_5xx.base_url}/v1")
        job_id = new_job(ctx, prompt="outage 5xx", api_key="sk_fake_not_real")
        timers = _outage(proxy, start=0.5, length=2.5)  # down while the create waits, back ~1.5 s after it
        nxt = submit(ctx, job_id, dispatched=True)
        for t in timers:
            t.join()
    finally:
        slow_5xx.stop()
    assert nxt.step is Step.SUBMIT and nxt.countdown < 5  # the lookup comes in seconds
    with ctx.sessions() as s:
        job = s.scalars(select(Job).where(Job.id == job_id)).one()
        assert job.status == "submitting" and job.create_in_flight_until is None and job.attempts == 1
