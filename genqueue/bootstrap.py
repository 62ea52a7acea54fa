"""The composition root: the one place that turns settings into engines, clients and services.

Every process kind builds one `Root` from its settings: the API (`asgi_app`, `genqueue api`), each
Celery worker process (in `worker_process_init`, see `genqueue.worker.celery_app`), the CLI commands
and the tests. A piece is built the first time it is asked for and then shared, so storage, intake
and the cipher exist once per process, and a process builds only what it uses (the API never makes
a Replicate client, `genqueue keys` never touches Redis). Tests pass fakes for any piece.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genqueue.core.settings import Settings

if TYPE_CHECKING:
    import redis
    from celery import Celery
    from cryptography.fernet import MultiFernet
    from fastapi import FastAPI
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from genqueue.intake import Intake
    from genqueue.sched.ready import ReadyQueues
    from genqueue.storage import Storage
    from genqueue.worker.context import WorkerContext
    from genqueue.worker.enqueue import Enqueuer


class Root:
    """Per-process wiring. `db_pool_size`: SQL connections kept open (a worker sizes it to its pool);
    `overrides`: ready-made pieces by attribute name (`enqueuer=`, `storage=`, `sessions=`, ...)."""

    def __init__(self, settings: Settings, *, db_pool_size: int | None = None, **overrides: Any) -> None:
        self.settings = settings
        self._db_pool_size = db_pool_size
        unknown = set(overrides) - _OVERRIDABLE
        if unknown:
            raise TypeError(f"Root() cannot take {sorted(unknown)}")
        # cached_property reads the instance dict first: an override is simply the cached value.
        self.__dict__.update(overrides)

    # --- SQL ------------------------------------------------------------------------------------
    @cached_property
    def engine(self) -> Engine:
        from genqueue.models.db import make_engine

        if self._db_pool_size is None:
            return make_engine(self.settings.effective_database_url)
        # A worker: a fixed set of connections and no overflow. A thread finding them all busy
        # waits (steps hold a session for a few ms, never across an HTTP call); overflow connections
        # are closed on return, so bursts reconnected all the time (~5% of a worker's CPU), and a
        # pool as large as the threads made 2 x 64 connections, over PostgreSQL's default 100.
        # No pre-ping: a step already retries on a database error, and a stale connection found that
        # way invalidates the whole pool, so after a restart only the first step per process fails.
        return make_engine(self.settings.effective_database_url, pool_size=self._db_pool_size, max_overflow=0,
                           pre_ping=False)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        from genqueue.models.db import make_session_factory

        return make_session_factory(self.engine)

    # --- secrets, storage, Redis ------------------------------------------------------------------
    @cached_property
    def cipher(self) -> MultiFernet:
        from genqueue.core.crypto import load_cipher

        key = self.settings.secrets_key
        return load_cipher(key.get_secret_value() if key else None, self.settings.data_dir)

    @cached_property
    def storage(self) -> Storage:
        from genqueue.storage import make_storage

        s = self.settings
        return make_storage(
            s.effective_storage_url,
            s3_endpoint_url=s.s3_endpoint_url,
            aws_access_key_id=s.aws_access_key_id,
            aws_secret_access_key=s.aws_secret_access_key.get_secret_value() if s.aws_secret_access_key else None,
            aws_region=s.aws_region,
        )

    @cached_property
    def redis(self) -> redis.Redis:
        import redis

        return redis.Redis.from_url(self.settings.redis_url, socket_timeout=10, socket_connect_timeout=5)

    # --- producing work ----------------------------------------------------------------------------
    @cached_property
    def celery(self) -> Celery:
        """A producer-side Celery app (sends tasks by name; registers none)."""
        from genqueue.worker.celery_app import make_celery

        return make_celery(self.settings)

    @cached_property
    def enqueuer(self) -> Enqueuer:
        from genqueue.worker.enqueue import Enqueuer

        return Enqueuer(self.celery)

    @cached_property
    def ready(self) -> ReadyQueues:
        """Queued jobs' lanes in Redis, where producers add jobs and the dispatcher takes them."""
        from genqueue.sched.ready import ReadyQueues

        return ReadyQueues(self.redis)

    @cached_property
    def intake(self) -> Intake:
        from genqueue.intake import Intake

        s = self.settings
        return Intake(self.sessions, self.cipher, s.secret_field_names, self.ready.add, s.job_deadline_seconds,
                      max_input_bytes=s.max_input_bytes, callback_allow_private=s.callback_allow_private,
                      retention_days=s.retention_days, prices=s.prices())

    # --- the database's schema and the key that opens its secrets -----------------------------------
    def migrate(self) -> Path | None:
        """Schema to head (Alembic). With no SECRETS_KEY and no key file, a new key file is written only
        while the database holds no sealed secrets: a key made later could not open them. Returns the
        new key file's path, or None; SecretsError when sealed secrets exist and no key is configured."""
        from genqueue.core.crypto import KEY_FILE, SecretsError, write_key_file
        from genqueue.models.jobs import newest_sealed
        from genqueue.models.migrate import upgrade

        upgrade(self.engine)
        s = self.settings
        if s.secrets_key or (s.data_dir / KEY_FILE).exists():
            return None
        with self.sessions() as session:
            if newest_sealed(session) is not None:
                raise SecretsError(
                    f"jobs with sealed secrets exist but no key is configured: restore {s.data_dir / KEY_FILE} "
                    "or set SECRETS_KEY to the key they were sealed with (a new key would not open them)")
        try:
            return write_key_file(s.data_dir)
        except FileExistsError:  # another process's migrate wrote it meanwhile: use that one
            return None

    def check_secrets(self) -> None:
        """Start-up check of a process that seals or opens secrets (API, worker): SecretsError, with
        one clear sentence, when there is no key or the newest sealed job does not open with it."""
        from genqueue.core.crypto import KEY_FILE, SecretsError, opens
        from genqueue.models.jobs import newest_sealed

        cipher = self.cipher
        with self.sessions() as session:
            newest = newest_sealed(session)
        if newest is not None and not opens(cipher, newest[1]):
            where = "SECRETS_KEY" if self.settings.secrets_key else str(self.settings.data_dir / KEY_FILE)
            raise SecretsError(f"the secrets key in {where} does not open job {newest[0]}'s sealed secrets: "
                               "set SECRETS_KEY (or GENQUEUE_DATA_DIR) to the key the jobs were sealed with")

    # --- process kinds -------------------------------------------------------------------------------
    def api_app(self) -> FastAPI:
        from genqueue.api.app import create_app

        return create_app(self)

    def worker_context(self, *, threads: bool = False, worker_id: str | None = None) -> WorkerContext:
        """`threads`: the process runs steps on threads (Prefer: wait on creates of quick models);
        `worker_id`: the heartbeat id its claims record."""
        from genqueue.worker.context import build_context

        return build_context(self, threads=threads, worker_id=worker_id)

    def close(self) -> None:
        """Release what was built (engine pool, Redis connections); pieces never built stay unbuilt."""
        built = self.__dict__
        if "engine" in built:
            built["engine"].dispose()
        if "redis" in built:
            built["redis"].close()


_OVERRIDABLE = frozenset({"engine", "sessions", "cipher", "storage", "redis", "celery", "enqueuer", "intake",
                          "ready"})


def asgi_app() -> FastAPI:
    """`uvicorn genqueue.bootstrap:asgi_app --factory` (what `genqueue api --workers N` runs in each
    process): settings from the environment, logging, then the app."""
    from genqueue.core.logs import setup_logging
    from genqueue.core.settings import load_settings

    settings = load_settings()
    setup_logging(settings.log_level)
    return Root(settings).api_app()
