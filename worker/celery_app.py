"""The Celery app factory: broker and settings that fit long-running, crash-prone work."""

from __future__ import annotations

from celery import Celery

from core.settings import Settings
from worker.enqueue import QUEUE

# Longest countdown we ever schedule (poll back-off, retry-after): the visibility timeout must exceed
# it, or Redis redelivers delayed messages that are merely waiting.
MAX_COUNTDOWN = 600


def make_celery(settings: Settings, *, include_tasks: bool = False) -> Celery:
    app = Celery("genqueue", broker=settings.redis_url, include=["worker.tasks"] if include_tasks else [])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        task_default_queue=QUEUE,
        # A message is acked after the task returns; a killed worker's message is redelivered.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": MAX_COUNTDOWN * 3},
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
            "sweep": {"task": "genqueue.sweep", "schedule": settings.sweep_interval, "options": {"queue": QUEUE}},
        },
    )
    return app
