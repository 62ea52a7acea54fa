"""The shape every worker-main-process thread shares (heartbeat, dispatcher, page reader).

A daemon thread opens what it needs once it runs (connections made after the pool has forked), calls
one step after another with the pause each step asks for, logs a failing spell once and its end, and
closes what it opened when stopped. Subclasses say what to open (`open`) and what one step is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import ExitStack

log = logging.getLogger(__name__)

FAILED_PAUSE = 1.0  # seconds before trying again after a step failed (Redis, the database, Replicate away)


class Background:
    name = "genqueue-background"
    what = "background thread"  # for the log: "<what> <worker id> paused (...)"

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def open(self, resources: ExitStack) -> Callable[[], float]:
        """Build what the steps use (register its clean-up on `resources`); returns the step, which
        returns the seconds to pause before the next one."""
        raise NotImplementedError

    def _run(self) -> None:
        with ExitStack() as resources:
            step = self.open(resources)
            failing = False
            while not self._stop.is_set():
                try:
                    pause = step()
                    if failing:
                        log.info("%s %s going again", self.what, self.worker_id)
                    failing = False
                except Exception as exc:  # a service is away: the next step tries again
                    if not failing:
                        log.warning("%s %s paused (%s: %s)", self.what, self.worker_id, type(exc).__name__, exc)
                    failing = True
                    pause = FAILED_PAUSE
                if pause > 0:
                    self._stop.wait(pause)
