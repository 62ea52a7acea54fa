"""Now, by the database's clock: the one clock every worker host agrees on.

A worker writes times that other hosts act on (a job's next check time, a claim's create window,
deadlines, the timings ops read) and sends messages with a delivery time. Taken from a host's own
clock, a host 90 s ahead (tests/chaos/test_hosts.py) made every other host wait 90 s for its jobs,
stamped 90 s of queue time that never happened, and would fail a queued job with a 90 s deadline at
once. So a worker process reads the database's clock (one SELECT) at start and then at most every
REFRESH seconds, and adds the difference to its own. Between reads it costs nothing; if a read fails
(the database is away) the last known difference is kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from genqueue.models.heartbeats import db_epoch

log = logging.getLogger(__name__)

REFRESH = 30.0  # seconds between reads of the database's clock
SKEW_WARNING = 5.0  # a host this far off the database's clock is logged (keep hosts on NTP)


def _local() -> datetime:
    return datetime.now(UTC)


class DatabaseClock:
    def __init__(self, sessions: sessionmaker[Session], *, refresh: float = REFRESH,
                 local: Callable[[], datetime] = _local, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._sessions = sessions
        self._refresh_every = refresh
        self._local = local
        self._monotonic = monotonic
        self._offset = timedelta(0)
        self._next_read = 0.0
        self._lock = threading.Lock()
        self._warned = False

    @property
    def offset(self) -> timedelta:
        """The database's clock minus this host's, as last read."""
        return self._offset

    def now(self) -> datetime:
        if self._monotonic() >= self._next_read and self._lock.acquire(blocking=False):
            try:  # one thread reads; the others use the last offset meanwhile
                self._read()
            finally:
                self._lock.release()
        return self._local() + self._offset

    def _read(self) -> None:
        self._next_read = self._monotonic() + self._refresh_every
        try:
            with self._sessions() as session:
                before = self._local()
                db_now = float(session.execute(select(db_epoch(session))).scalar_one())
                after = self._local()
        except Exception as exc:  # the database is away: keep the last offset, try again later
            log.debug("database clock not read (%s); keeping offset %s", type(exc).__name__, self._offset)
            return
        local_mid = before + (after - before) / 2
        self._offset = datetime.fromtimestamp(db_now, UTC) - local_mid
        skew = abs(self._offset.total_seconds())
        if skew > SKEW_WARNING and not self._warned:
            self._warned = True
            log.warning("this host's clock is %.1f s off the database's; genqueue uses the database's", skew)
