"""The worker's heartbeat (the rule that reads it: `genqueue.models.heartbeats`).

One thread in a worker's main process beats once a second over a pool-less engine of its own, so no
connection is ever held across the fork of a pool child. A failed beat is logged once and retried;
the worker goes on working (a silent worker only makes its own in-flight creates wait out their
window, the behaviour before heartbeats).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from genqueue.models.db import make_engine, make_session_factory
from genqueue.models.heartbeats import BEAT_EVERY, beat

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    """Unique per start: host, pid and a random part (a restarted worker is a new one)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Heartbeat:
    def __init__(self, database_url: str, worker_id: str, every: float = BEAT_EVERY) -> None:
        self.worker_id = worker_id
        self._every = every
        self._url = database_url
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="genqueue-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        engine = make_engine(self._url, no_pool=True)
        sessions = make_session_factory(engine)
        failing = False
        try:
            while True:
                try:
                    with sessions.begin() as session:
                        beat(session, self.worker_id)
                    if failing:
                        log.info("heartbeat %s recorded again", self.worker_id)
                    failing = False
                except Exception as exc:  # the database is away: the next beat tries again
                    if not failing:
                        log.warning("heartbeat %s not recorded (%s); retrying", self.worker_id, type(exc).__name__)
                    failing = True
                if self._stop.wait(self._every):
                    return
        finally:
            engine.dispose()
