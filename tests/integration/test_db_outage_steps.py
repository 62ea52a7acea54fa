"""PostgreSQL going away in the middle of a step, against real SQL (through a loopback proxy that
the test takes down), a real simulator and real Redis: the step's own retry carries on, rather than
a retry that drops itself and leaves the job to the sweeper minutes later."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from core.settings import load_settings
from intake import JobRequest
from intake.service import Intake
from models.db import make_engine
from models.migrate import upgrade
from models.tables import Job
from simulator.config import SimConfig
from simulator.server import SimHandle, run_in_thread
from tests.support.tcpproxy import TcpProxy
from worker import tasks
from worker.runtime import WorkerContext, build_context
from worker.services.outcomes import Next
from worker.services.submit import submit

VERSION = "jigsawstack/image-generation:43d5bce2e1c97fa1e7d8996187a85cd5c882787989091af3b135c7a16ca23b79"


class RecordingEnqueuer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, float]] = []

    def store(self, job_id: str, countdown: float = 0.0) -> None:
        self.sent.append(("store", job_id, countdown))

    def poll(self, job_id: str, countdown: float = 0.0) -> None:
        self.sent.append(("poll", job_id, countdown))


@pytest.fixture
def sim() -> Iterator[SimHandle]:
    # Prefer: wait holds the create open for the whole 1.5 s prediction: time to cut the database.
    handle = run_in_thread(SimConfig(start_delay=0.0, predict_seconds=1.5))
    try:
        yield handle
    finally:
        handle.stop()


def _ctx(tmp_path: Path, db_url: str, redis_url: str, sim: SimHandle) -> WorkerContext:
    settings = load_settings(_env_file=None, DATABASE_URL=db_url, REDIS_URL=redis_url,
                             REPLICATE_API_TOKEN="r8_sim_fake_token", REPLICATE_BASE_URL=f"{sim.base_url}/v1",
                             GENQUEUE_DATA_DIR=tmp_path, STORAGE_URL=f"file://{tmp_path}/out", GENQUEUE_CREATE_WAIT=5,
                             OUTPUT_ALLOWED_HOSTS="127.0.0.1", OUTPUT_ALLOW_PRIVATE=True)
    assert settings.create_wait_seconds == 5
    upgrade(make_engine(settings.effective_database_url))
    ctx = build_context(settings, app=None)
    ctx.enqueuer = RecordingEnqueuer()  # type: ignore[assignment]
    return ctx


def _new_job(ctx: WorkerContext) -> str:
    intake = Intake(ctx.sessions, ctx.cipher, frozenset({"api_key"}), lambda ids: None, 3600)
    [job], _ = intake.submit([JobRequest(version=VERSION, input={"prompt": "outage", "api_key": "sk_fake_not_real"})])
    return job.id


def _outage(proxy: TcpProxy, start: float, length: float) -> list[threading.Timer]:
    timers = [threading.Timer(start, proxy.down), threading.Timer(start + length, proxy.start)]
    for t in timers:
        t.start()
    return timers


def test_create_answer_is_recorded_through_an_outage(tmp_path: Path, pg_via_proxy: tuple[str, TcpProxy],
                                                      redis_url: str, sim: SimHandle) -> None:
    db_url, proxy = pg_via_proxy
    ctx = _ctx(tmp_path, db_url, redis_url, sim)
    job_id = _new_job(ctx)
    timers = _outage(proxy, start=0.5, length=2.5)  # down while the create waits, back ~1.5 s after it answers

    nxt = submit(ctx, job_id)
    for t in timers:
        t.join()

    assert nxt.task == "store" and nxt.job is not None  # the prediction succeeded during the wait
    with ctx.sessions() as s:
        job = s.scalars(select(Job).where(Job.id == job_id)).one()
        assert job.status == "storing" and job.prediction_id and job.attempts == 1
    assert len(sim.state.store.records) == 1  # recorded, not created again


def test_copy_that_hits_an_outage_is_retried_as_a_store_step(tmp_path: Path, pg_via_proxy: tuple[str, TcpProxy],
                                                              redis_url: str, sim: SimHandle) -> None:
    db_url, proxy = pg_via_proxy
    ctx = _ctx(tmp_path, db_url, redis_url, sim)
    job_id = _new_job(ctx)
    nxt = submit(ctx, job_id)
    assert nxt.task == "store"
    proxy.down()  # the copy's success cannot be recorded
    try:
        tasks._follow(ctx, job_id, nxt)
    finally:
        proxy.start()
    sent = ctx.enqueuer.sent  # type: ignore[attr-defined]
    assert [(step, jid) for step, jid, _ in sent] == [("store", job_id)]
    assert tasks._follow(ctx, job_id, Next("store")) is None  # the retried step finishes the job
    with ctx.sessions() as s:
        assert s.scalars(select(Job.status).where(Job.id == job_id)).one() == "succeeded"
