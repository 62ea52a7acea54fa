"""The FastAPI app factory: wires settings into SQL, Redis, the enqueuer, storage and the routes.

Anything passed in is used as is (tests inject fakes); the rest is built from settings here, never at
import time. The engine the factory built is disposed on shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from genqueue.api import (
    dashboard,
    routes_health,
    routes_jobs,
    routes_metrics,
    routes_outputs,
    routes_stats,
    routes_webhooks,
)
from genqueue.api.bodylimit import BodySizeLimit
from genqueue.api.deps import JobEnqueuer, OutputReader
from genqueue.api.errors import install_error_handlers
from genqueue.api.ratelimit import RateLimiter
from genqueue.core.crypto import load_cipher
from genqueue.core.settings import Settings
from genqueue.intake import Intake
from genqueue.models.db import make_engine, make_session_factory

DESCRIPTION = """Durable Replicate generation jobs. Create jobs, follow them, download their stored outputs.

Every route but `/healthz` and `/readyz` needs `Authorization: Bearer <API key>`. Errors always have the
body `{"error": {"code", "message", "fields": [{"field", "reason"}]}}`."""


def _make_storage(settings: Settings) -> OutputReader:
    from genqueue.storage import make_storage

    secret = settings.aws_secret_access_key
    store: OutputReader = make_storage(
        settings.effective_storage_url,
        s3_endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        aws_region=settings.aws_region,
    )
    return store


def _make_enqueuer(settings: Settings) -> JobEnqueuer:
    from genqueue.worker.celery_app import make_celery
    from genqueue.worker.enqueue import Enqueuer

    return Enqueuer(make_celery(settings))


def create_app(
    settings: Settings,
    *,
    session_factory: sessionmaker[Session] | None = None,
    enqueuer: JobEnqueuer | None = None,
    storage: OutputReader | None = None,
    redis_client: redis.Redis | None = None,
) -> FastAPI:
    engine: Engine | None = None
    if session_factory is None:
        engine = make_engine(settings.effective_database_url)
        session_factory = make_session_factory(engine)
    if enqueuer is None:
        enqueuer = _make_enqueuer(settings)
    if storage is None:
        storage = _make_storage(settings)
    owns_redis = redis_client is None
    if redis_client is None:
        redis_client = redis.Redis.from_url(settings.redis_url, socket_timeout=2.0, socket_connect_timeout=1.0)
    key = settings.secrets_key.get_secret_value() if settings.secrets_key else None
    intake = Intake(session_factory, load_cipher(key, settings.data_dir), settings.secret_field_names,
                    enqueuer, settings.job_deadline_seconds)
    client = redis_client

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if engine is not None:
                engine.dispose()
            if owns_redis:
                client.close()

    app = FastAPI(title="genqueue", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.session_factory = session_factory
    app.state.enqueuer = enqueuer
    app.state.storage = storage
    app.state.redis = redis_client
    app.state.intake = intake
    app.state.limiter = RateLimiter(redis_client, settings.api_rate_per_min)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.include_router(routes_health.router)
    app.include_router(routes_jobs.router)
    app.include_router(routes_outputs.router)
    app.include_router(routes_stats.router)
    app.include_router(routes_metrics.router)
    app.include_router(routes_webhooks.router)
    app.include_router(dashboard.router)
    return app
