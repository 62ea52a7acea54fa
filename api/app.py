"""The FastAPI app factory: wires settings into SQL, Redis, the enqueuer, storage and the routes.

The pieces come from the composition root (`genqueue.bootstrap.Root`), which tests fill with fakes;
nothing is built at import time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from genqueue.api import (
    dashboard,
    routes_batches,
    routes_callbacks,
    routes_events,
    routes_health,
    routes_jobs,
    routes_metrics,
    routes_outputs,
    routes_retries,
    routes_stats,
    routes_webhooks,
)
from genqueue.api.admission import Admission
from genqueue.api.auth import AuthBeforeBody
from genqueue.api.bodylimit import BodySizeLimit
from genqueue.api.deps import ApiParts
from genqueue.api.errors import install_error_handlers
from genqueue.api.estimates import Estimator
from genqueue.api.events_hub import EventHub
from genqueue.api.guards import CatchAll, RejectNul
from genqueue.api.ratelimit import RateLimiter
from genqueue.api.webhook_auth import WebhookSecret

DESCRIPTION = """Durable Replicate generation jobs. Create jobs, follow them, download their stored outputs.

Every route but `/healthz` and `/readyz` needs `Authorization: Bearer <API key>`. Errors always have the
body `{"error": {"code", "message", "fields": [{"field", "reason"}]}}`."""


def create_app(parts: ApiParts) -> FastAPI:
    """The app over `parts` (the composition root, `genqueue.bootstrap.Root`, or one with fakes in
    it); the parts are closed when the app shuts down."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.webhook_url:  # fetch the signing secret now, so the first delivery finds it
            app.state.webhook_secret.prefetch()
        try:
            yield
        finally:
            await app.state.events.close()
            parts.close()

    settings = parts.settings
    app = FastAPI(title="genqueue", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.session_factory = parts.sessions
    app.state.enqueuer = parts.enqueuer
    app.state.storage = parts.storage
    app.state.redis = parts.redis
    app.state.intake = parts.intake
    app.state.limiter = RateLimiter(parts.redis, settings.api_rate_per_min)
    app.state.estimator = Estimator(parts.redis, settings)
    app.state.webhook_secret = WebhookSecret(settings)
    app.state.events = EventHub(settings.redis_url, parts.sessions)  # started by the first waiter/subscriber
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes,
                       streamed={routes_batches.CREATE_PATH: settings.max_batch_bytes})
    app.add_middleware(AuthBeforeBody)  # outside BodySizeLimit: no body is read before auth
    app.add_middleware(Admission)  # outside AuthBeforeBody: the key lookup is a request's first SQL
    app.add_middleware(RejectNul)
    app.add_middleware(CatchAll)  # added last, so outermost: it also covers the middlewares above
    app.include_router(routes_health.router)
    app.include_router(routes_jobs.router)
    app.include_router(routes_retries.router)
    app.include_router(routes_callbacks.router)
    app.include_router(routes_batches.router)
    app.include_router(routes_events.router)
    app.include_router(routes_outputs.router)
    app.include_router(routes_stats.router)
    app.include_router(routes_metrics.router)
    app.include_router(routes_webhooks.router)
    app.include_router(dashboard.router)
    return app
