"""Sending work to the workers: the one piece of `worker/` that producers (api, intake) import.

Messages carry a job id (JSON), plus, for a webhook, the finished prediction without its input: never
input or secrets. Tasks are sent by name so producers don't import task code.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

QUEUE = "genqueue"  # new work (submit); its length tells the sweeper how big the backlog is
# Follow-up work on predictions already paid for (poll, store, cancel, sweep). Workers read it first,
# so a backlog of new jobs never delays noticing and copying finished ones.
FOLLOW_QUEUE = "genqueue.follow"
# Copying outputs of predictions already noticed as finished. Read after the follow-up queue and
# before new work: when many predictions finish at once (a burst of webhooks), each is recorded as
# finished in a few ms and its copy waits here, instead of a copy blocking the next one's noticing.
STORE_QUEUE = "genqueue.store"
# Signed callbacks to callers' URLs (worker.services.callbacks): a queue of their own, read last, so a
# slow or dead receiver never holds a job's own steps (`genqueue worker --queues callbacks` isolates them).
CALLBACK_QUEUE = "genqueue.callbacks"
# The order workers read the queues in (the "priority" queue order strategy in celery_app).
ALL_QUEUES = (FOLLOW_QUEUE, STORE_QUEUE, QUEUE, CALLBACK_QUEUE)
SUBMIT = "genqueue.submit"
POLL = "genqueue.poll"
STORE = "genqueue.store"
CANCEL = "genqueue.cancel"
OBSERVE = "genqueue.observe"
SWEEP = "genqueue.sweep"
CALLBACK = "genqueue.callback"  # deliver a job's due callbacks
# The task that runs each lifecycle step (worker.lifecycle.decision.Step), by the step's name.
TASK_FOR_STEP = {"submit": SUBMIT, "poll": POLL, "store": STORE}


def queue_for(task: str) -> str:
    """The queue a task's messages travel on."""
    if task == CALLBACK:
        return CALLBACK_QUEUE
    return QUEUE if task == SUBMIT else STORE_QUEUE if task == STORE else FOLLOW_QUEUE


class Enqueuer:
    """Every message is published through the default exchange, straight onto its queue's list, so
    none needs the queue declared (declaring copies and binds the entity per message: a quarter of
    the publish CPU). `argsrepr` is given so Celery doesn't saferepr the args, and so a pushed
    prediction's outputs never appear in a worker's logs."""

    def __init__(self, app: Celery) -> None:
        self._app = app

    def send(self, task: str, args: list[Any], countdown: float = 0.0, **options: Any) -> None:
        """Any task by name, on its queue (`queue_for`); the methods below are the usual ones."""
        self._app.send_task(task, args=args, queue=queue_for(task), countdown=countdown or None, declare=[],
                            argsrepr=f"['{args[0]}']" if len(args) == 1 else f"['{args[0]}', ...]",
                            kwargsrepr="{}", **options)

    def submit(self, job_ids: list[str]) -> None:
        # One producer for the whole batch, and its LPUSHes sent as one Redis pipeline (kombu's
        # publish batch) rather than one round trip and one client per message.
        with self._app.producer_or_acquire() as producer, producer.batch():
            for job_id in job_ids:
                self.send(SUBMIT, [job_id], producer=producer)

    def __call__(self, job_ids: list[str]) -> None:
        self.submit(job_ids)

    def poll(self, job_id: str, countdown: float = 0.0) -> None:
        self.send(POLL, [job_id], countdown)

    def store(self, job_id: str, countdown: float = 0.0) -> None:
        self.send(STORE, [job_id], countdown)

    def observe(self, job_id: str, prediction: dict[str, Any]) -> None:
        """A finished prediction that Replicate pushed (webhook): its status, outputs, error and
        metrics only; the API strips `input` and `logs` before this, so no secret is on the broker."""
        self.send(OBSERVE, [job_id, prediction])

    def cancel(self, job_id: str) -> None:
        self.send(CANCEL, [job_id])
