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
import uuid
from collections.abc import Callable
from contextlib import ExitStack

from genqueue.models.db import make_engine, make_session_factory
from genqueue.models.heartbeats import BEAT_EVERY, beat
from genqueue.worker.background import Background

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    """Unique per start: host, pid and a random part (a restarted worker is a new one)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Heartbeat(Background):
    name = "genqueue-heartbeat"
    what = "heartbeat"

    def __init__(self, database_url: str, worker_id: str, every: float = BEAT_EVERY) -> None:
        super().__init__(worker_id)
        self._every = every
        self._url = database_url

    def open(self, resources: ExitStack) -> Callable[[], float]:
        engine = make_engine(self._url, no_pool=True)
        resources.callback(engine.dispose)
        sessions = make_session_factory(engine)

        def step() -> float:
            with sessions.begin() as session:
                beat(session, self.worker_id)
            return self._every

        return step
