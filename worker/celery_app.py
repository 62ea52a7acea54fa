"""The Celery app factories: broker and settings that fit long-running, crash-prone work."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutdown

from genqueue.core.settings import Settings
from genqueue.worker.broker import TRANSPORT
from genqueue.worker.enqueue import FOLLOW_QUEUE, QUEUE

if TYPE_CHECKING:
    from genqueue.worker.context import WorkerContext

SWEEP_INTERVAL = 2.0  # seconds between sweeps (worker.services.sweep): one indexed query when all is well;
# often enough that a lost step runs again within a few seconds of a fault clearing
# Longest countdown any task is sent with (worker/tasks.py caps every follow-up to it; polls wait at most
# lifecycle.policy.MAX_POLL_DELAY, the safety-net poll SAFETY_POLL). Redis redelivers an unacked
# message after the visibility timeout, so that must be well above it, or delayed messages that are
# merely waiting would run twice.
MAX_COUNTDOWN = 300.0
VISIBILITY_TIMEOUT = 1800


def make_celery(settings: Settings) -> Celery:
    """A producer-side app (send_task only); `make_worker_app` is the one with tasks."""
    app = Celery("genqueue", broker=settings.redis_url)
    configure(app, settings)
    return app


def configure(app: Celery, settings: Settings) -> None:
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
        # "priority": workers always take from the queues in the order given (-Q follow,new), so
        # polls and stores are never stuck behind a backlog of submits.
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT, "queue_order_strategy": "priority"},
        broker_connection_retry_on_startup=True,
        # kombu's Redis transport, minus a crash when Redis restarts (`genqueue.worker.broker`).
        broker_transport=TRANSPORT,
        broker_connection_max_retries=None,
        worker_enable_soft_shutdown_on_idle=True,
        worker_soft_shutdown_timeout=10.0,
        task_time_limit=300,
        task_soft_time_limit=240,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        timezone="UTC",
        beat_schedule={
            "sweep": {"task": "genqueue.sweep", "schedule": SWEEP_INTERVAL,
                      "options": {"queue": FOLLOW_QUEUE}},
        },
    )


class WorkerApp(Celery):
    """A worker's Celery app: the tasks, and the per-process context they run with."""

    worker_context: WorkerContext | None = None

    def now(self) -> datetime:
        """Celery turns a countdown into a delivery time with this: by the database's clock once the
        context exists (`worker.clock`), so a host whose clock is off sends no message other hosts
        hold back for the difference."""
        if self.worker_context is not None:
            return self.worker_context.clock.now()
        return super().now()

    @property
    def context(self) -> WorkerContext:
        if self.worker_context is None:
            raise RuntimeError("the worker context is built when the worker process starts")
        return self.worker_context


def make_worker_app(settings: Settings, *, pool: str = "prefork", concurrency: int = 1) -> WorkerApp:
    """The app a worker or beat process runs: tasks registered, and the context built once per
    process when it starts: in each prefork child after the fork (connections must not cross it),
    in the main process for the threads and solo pools."""
    from genqueue.bootstrap import Root
    from genqueue.worker import tasks
    from genqueue.worker.context import follow_strategy
    from genqueue.worker.dispatcher import Dispatcher
    from genqueue.worker.heartbeat import Heartbeat, new_worker_id
    from genqueue.worker.pages import PageReader

    app = WorkerApp("genqueue", broker=settings.redis_url)
    configure(app, settings)
    tasks.register(app)
    threads = pool == "threads"
    # A prefork child runs one task at a time; a threads process up to `concurrency`, and a thread
    # finding every connection busy waits its turn (a step holds a session for a few ms).
    db_pool = min(concurrency, 16) if threads else 2

    # One id per worker (its main process, which prefork children inherit): their claims record it,
    # and the main process beats for all of them once it is ready (after the pool has forked).
    worker_id = new_worker_id()
    heartbeat = Heartbeat(settings.effective_database_url, worker_id)

    def build(**_: Any) -> None:
        app.worker_context = Root(settings, db_pool_size=db_pool, celery=app).worker_context(
            threads=threads, worker_id=worker_id)

    # Every worker runs a dispatcher thread; one at a time holds the lease and hands out create
    # tokens (worker.dispatcher), another takes over within seconds when that worker dies.
    dispatcher = Dispatcher(settings, app, worker_id)
    # Without webhooks, every worker also runs a page reader thread; one at a time reads list pages
    # where due predictions are dense (worker.pages).
    pages = PageReader(settings, app, worker_id) if follow_strategy(settings).reads_pages else None

    def ready(**_: Any) -> None:
        heartbeat.start()
        dispatcher.start()
        if pages is not None:
            pages.start()

    def shutdown(**_: Any) -> None:
        if pages is not None:
            pages.stop()
        dispatcher.stop()
        heartbeat.stop()

    worker_ready.connect(ready, weak=False)
    worker_shutdown.connect(shutdown, weak=False)
    worker_process_init.connect(build, weak=False) if pool == "prefork" else worker_init.connect(build, weak=False)
    return app
