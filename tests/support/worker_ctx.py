"""A worker's per-process context for tests that call services directly (no Celery): real SQL and
Redis, built by the composition root like a worker's, with an enqueuer that records what would be sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genqueue.bootstrap import Root
from genqueue.core.settings import load_settings
from genqueue.intake import JobRequest
from genqueue.worker.context import WorkerContext
from tests.support.fakes import RecordingEnqueuer

VERSION = "jigsawstack/image-generation:43d5bce2e1c97fa1e7d8996187a85cd5c882787989091af3b135c7a16ca23b79"


def worker_context(tmp_path: Path, db_url: str, redis_url: str, *, threads: bool = False,
                   **env: Any) -> WorkerContext:
    """Migrated database, `ctx.enqueuer` a RecordingEnqueuer; `env` overrides settings by their
    environment names; `threads`: the policy of a threads-pool worker (Prefer: wait on quick models)."""
    settings = load_settings(_env_file=None, **{"DATABASE_URL": db_url, "REDIS_URL": redis_url,
                                                "REPLICATE_API_TOKEN": "r8_sim_fake_token",
                                                "GENQUEUE_DATA_DIR": tmp_path,
                                                "STORAGE_URL": f"file://{tmp_path}/out", **env})
    root = Root(settings, db_pool_size=4, enqueuer=RecordingEnqueuer())
    root.migrate()
    return root.worker_context(threads=threads)


def recorded(ctx: WorkerContext) -> RecordingEnqueuer:
    assert isinstance(ctx.enqueuer, RecordingEnqueuer)
    return ctx.enqueuer


def new_job(ctx: WorkerContext, **input_: Any) -> str:
    """A job accepted through the real intake (queued, secrets sealed); its id."""
    from genqueue.intake import Intake

    intake = Intake(ctx.sessions, ctx.cipher, frozenset({"api_key"}), lambda ids: None, 3600)
    [job], _ = intake.submit([JobRequest(version=VERSION, input={"prompt": "p", "api_key": "k", **input_})])
    return job.id
