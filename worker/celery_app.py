"""The Celery app factory: broker and settings that fit long-running, crash-prone work."""

from __future__ import annotations

from celery import Celery

from genqueue.core.settings import Settings
from genqueue.worker.enqueue import FOLLOW_QUEUE, QUEUE
from genqueue.worker.redis_broker import TRANSPORT

# Longest countdown any task is sent with (retries are capped to it in worker/tasks.py; polls wait at
# most GENQUEUE_POLL_MAX_DELAY). Redis redelivers an unacked message after the visibility timeout, so
# that must be well above it or delayed messages that are merely waiting would run twice.
MAX_COUNTDOWN = 300.0
VISIBILITY_TIMEOUT = 1800


def make_celery(settings: Settings) -> Celery:
    """A producer-side app (send_task only); `make_worker_app` adds the tasks."""
    app = Celery("genqueue", broker=settings.redis_url)
    app.conf.update(
        # kombu's Redis transport with one client per channel; plain redis:// only (rediss:// and
        # sentinel:// keep kombu's own, which sets up their TLS and discovery from the scheme).
        broker_transport=TRANSPORT if settings.redis_url.startswith("redis://") else None,
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        task_default_queue=QUEUE,
        # A message is acked after the task returns; a killed worker's message is redelivered.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # "priority": workers always take from the queues in the order given (-Q follow,new), so
        # polls and stores are never stuck behind a backlog of submits.
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT, "queue_order_strategy": "priority"},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_enable_soft_shutdown_on_idle=True,
        worker_soft_shutdown_timeout=10.0,
        task_time_limit=300,
        task_soft_time_limit=240,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        timezone="UTC",
        beat_schedule={
            "sweep": {"task": "genqueue.sweep", "schedule": settings.sweep_interval,
                      "options": {"queue": FOLLOW_QUEUE}},
        },
    )
    return app


def make_worker_app(settings: Settings) -> Celery:
    """The app a worker or beat process runs: tasks registered, resources built per process."""
    from genqueue.worker import runtime, tasks

    app = make_celery(settings)
    tasks.register(app)
    runtime.configure(settings, app)
    return app
