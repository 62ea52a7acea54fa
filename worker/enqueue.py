"""Sending work to the workers: the one piece of `worker/` that producers (api, intake) import.

Messages carry only a job id (JSON), never input or secrets. Tasks are sent by name so producers
don't import task code.
"""

from __future__ import annotations

from celery import Celery

QUEUE = "genqueue"  # new work (submit); its length tells the sweeper how big the backlog is
# Follow-up work on predictions already paid for (poll, store, cancel, sweep). Workers read it first,
# so a backlog of new jobs never delays noticing and copying finished ones.
FOLLOW_QUEUE = "genqueue.follow"
SUBMIT = "genqueue.submit"
POLL = "genqueue.poll"
STORE = "genqueue.store"
CANCEL = "genqueue.cancel"
SWEEP = "genqueue.sweep"


class Enqueuer:
    def __init__(self, app: Celery) -> None:
        self._app = app

    def submit(self, job_ids: list[str]) -> None:
        # One producer for the whole batch, and its LPUSHes sent as one Redis pipeline (kombu's
        # publish batch) rather than one round trip and one client per message.
        with self._app.producer_or_acquire() as producer, producer.batch():
            for job_id in job_ids:
                self._app.send_task(SUBMIT, args=[job_id], queue=QUEUE, producer=producer)

    def __call__(self, job_ids: list[str]) -> None:
        self.submit(job_ids)

    def poll(self, job_id: str, countdown: float = 0.0) -> None:
        self._app.send_task(POLL, args=[job_id], queue=FOLLOW_QUEUE, countdown=countdown or None)

    def store(self, job_id: str, countdown: float = 0.0) -> None:
        self._app.send_task(STORE, args=[job_id], queue=FOLLOW_QUEUE, countdown=countdown or None)

    def cancel(self, job_id: str) -> None:
        self._app.send_task(CANCEL, args=[job_id], queue=FOLLOW_QUEUE)
