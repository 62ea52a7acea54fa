"""A worker's per-process context for tests that call services directly (no Celery): real SQL and
Redis, settings given by their environment names, and an enqueuer that records what would be sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genqueue.core.settings import load_settings
from genqueue.intake import JobRequest
from genqueue.intake.service import Intake
from genqueue.models.db import make_engine
from genqueue.models.migrate import upgrade
from genqueue.worker.runtime import WorkerContext, build_context

VERSION = "jigsawstack/image-generation:43d5bce2e1c97fa1e7d8996187a85cd5c882787989091af3b135c7a16ca23b79"


class RecordingEnqueuer:
    """Stands in for worker.enqueue.Enqueuer: `sent` holds (step, job id) in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def submit(self, ids: list[str]) -> None:
        self.sent += [("submit", i) for i in ids]

    __call__ = submit

    def poll(self, job_id: str, countdown: float = 0.0) -> None:
        self.sent.append(("poll", job_id))

    def store(self, job_id: str, countdown: float = 0.0) -> None:
        self.sent.append(("store", job_id))

    def cancel(self, job_id: str) -> None:
        self.sent.append(("cancel", job_id))


def worker_context(tmp_path: Path, db_url: str, redis_url: str, **env: Any) -> WorkerContext:
    """Migrated database, `ctx.enqueuer` a RecordingEnqueuer; `env` overrides settings by their
    environment names (e.g. GENQUEUE_CREATE_WAIT=5)."""
    settings = load_settings(_env_file=None, **{"DATABASE_URL": db_url, "REDIS_URL": redis_url,
                                                "REPLICATE_API_TOKEN": "r8_sim_fake_token",
                                                "GENQUEUE_DATA_DIR": tmp_path,
                                                "STORAGE_URL": f"file://{tmp_path}/out", **env})
    upgrade(make_engine(settings.effective_database_url))
    ctx = build_context(settings, app=None)
    ctx.enqueuer = RecordingEnqueuer()  # type: ignore[assignment]
    return ctx


def new_job(ctx: WorkerContext, **input_: Any) -> str:
    """A job accepted through the real intake (queued, secrets sealed); its id."""
    intake = Intake(ctx.sessions, ctx.cipher, frozenset({"api_key"}), lambda ids: None, 3600)
    [job], _ = intake.submit([JobRequest(version=VERSION, input={"prompt": "p", "api_key": "k", **input_})])
    return job.id
