"""A real pipeline for integration tests: simulator on loopback, Celery worker (and beat) processes,
a database and a Redis DB index of the test's own, jobs submitted through the real intake."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from genqueue.bootstrap import Root
from genqueue.cli.stack import Stack
from genqueue.core.settings import Settings, load_settings
from genqueue.intake import Intake, JobRequest
from genqueue.models.status import TERMINAL_NAMES as TERMINAL
from genqueue.models.tables import Job
from genqueue.worker.enqueue import Enqueuer

VERSION = "jigsawstack/image-generation:43d5bce2e1c97fa1e7d8996187a85cd5c882787989091af3b135c7a16ca23b79"
FAKE_API_KEY = "sk_test_fake_not_a_real_key"


@dataclass
class Pipeline:
    env: dict[str, str]
    settings: Settings
    sessions: sessionmaker[Session]
    intake: Intake
    enqueuer: Enqueuer
    sim_url: str
    stack: Stack

    def request(self, prompt: str | None = None, **extra: Any) -> JobRequest:
        deadline = extra.pop("deadline_seconds", None)
        inp = {"prompt": prompt or f"ocean {uuid.uuid4().hex}", "aspect_ratio": "16:9", "output_format": "png",
               "steps": 4, "api_key": FAKE_API_KEY, **extra}
        return JobRequest(version=VERSION, input=inp, deadline_seconds=deadline)

    def submit(self, n: int = 1, **extra: Any) -> list[str]:
        jobs, _ = self.intake.submit([self.request(**extra) for _ in range(n)], batch=n > 1)
        return [j.id for j in jobs]

    def sim(self, **knobs: Any) -> None:
        httpx.post(f"{self.sim_url}/_sim/config", json=knobs, timeout=10).raise_for_status()

    def sim_records(self) -> dict[str, dict[str, Any]]:
        data = httpx.get(f"{self.sim_url}/_sim/predictions", timeout=30).json()
        return {p["id"]: p for p in data["predictions"]}

    def jobs(self, ids: list[str]) -> list[Job]:
        with self.sessions() as s:
            rows = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_(ids)).options(selectinload(Job.outputs)))}
        return [rows[i] for i in ids]

    def wait(self, ids: list[str], timeout: float = 90.0, statuses: tuple[str, ...] = TERMINAL) -> list[Job]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.sessions() as s:
                done = s.scalar(select(func.count()).where(Job.id.in_(ids), Job.status.in_(statuses)))
            if done == len(ids):
                return self.jobs(ids)
            time.sleep(0.2)
        pending = [j for j in self.jobs(ids) if j.status not in statuses]
        try:
            records = self.sim_records()
        except httpx.HTTPError:
            records = {}
        detail = [
            {"id": j.id, "status": j.status, "prediction": j.prediction_id, "prediction_status": j.prediction_status,
             "sim_status": records.get(j.prediction_id or "", {}).get("status"), "next_check_at": str(j.next_check_at),
             "deliveries": j.deliveries, "polls": j.polls, "attempts": j.attempts}
            for j in pending[:10]
        ]
        raise AssertionError(f"{len(pending)}/{len(ids)} jobs not {statuses} after {timeout}s: {detail}; "
                             f"logs in {self.stack.log_dir}")


def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def settings_from(env: dict[str, str], **overrides: Any) -> Settings:
    """Settings as a process started with `env` would load them (this process's environment is
    left as it was)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return load_settings(_env_file=None, **overrides)
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def pipeline(tmp: Path, db_url: str, redis_url: str, sim_url: str, *, concurrency: int = 4, beat: bool = False,
             env_extra: dict[str, str] | None = None, pool: str = "prefork",
             api_port: int | None = None) -> Iterator[Pipeline]:
    """`api_port`: also run `genqueue api` there (webhooks are delivered to it)."""
    env = dict(os.environ)
    env.update(
        GENQUEUE_DATA_DIR=str(tmp / "data"), DATABASE_URL=db_url, REDIS_URL=redis_url,
        STORAGE_URL=f"file://{tmp}/outputs", REPLICATE_BASE_URL=f"{sim_url}/v1",
        REPLICATE_API_TOKEN="r8_sim_fake_token",
        OUTPUT_ALLOWED_HOSTS=urlsplit(sim_url).netloc, OUTPUT_ALLOW_PRIVATE="true",
        GENQUEUE_LOG_LEVEL="INFO",
    )
    env.update(env_extra or {})
    settings = settings_from(env)
    root = Root(settings)  # the producer side, wired as the API wires it
    root.migrate()
    with Stack(env, tmp / "logs") as stack:
        stack.add("worker", "worker", "--concurrency", str(concurrency), "--pool", pool)
        if beat:
            stack.add("beat", "beat")
        if api_port is not None:
            stack.add("api", "api", "--port", str(api_port))
            _wait_http(f"http://127.0.0.1:{api_port}/healthz")
        try:
            yield Pipeline(env, settings, root.sessions, root.intake, root.enqueuer, sim_url, stack)
        finally:
            root.celery.close()
    root.close()
