"""The worker's clock follows the database's (worker/clock.py), read at most every REFRESH seconds.
A real SQLite database gives the database's time; the host's own clock is a test value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from genqueue.models.db import make_engine, make_session_factory
from genqueue.worker.clock import REFRESH, DatabaseClock


class _Host:
    """A host clock `ahead` of the real one, and a monotonic clock the test moves."""

    def __init__(self, ahead: timedelta) -> None:
        self.ahead = ahead
        self.mono = 0.0

    def local(self) -> datetime:
        return datetime.now(UTC) + self.ahead

    def monotonic(self) -> float:
        return self.mono


def _clock(tmp_path: Path, host: _Host) -> DatabaseClock:
    sessions = make_session_factory(make_engine(f"sqlite:///{tmp_path}/clock.db"))
    return DatabaseClock(sessions, local=host.local, monotonic=host.monotonic)


def test_a_host_90_s_ahead_stamps_the_databases_time(tmp_path: Path) -> None:
    host = _Host(timedelta(seconds=90))
    clock = _clock(tmp_path, host)
    assert abs((clock.now() - datetime.now(UTC)).total_seconds()) < 1.0
    assert abs(clock.offset.total_seconds() + 90) < 1.0


def test_the_database_is_read_again_only_after_refresh(tmp_path: Path) -> None:
    host = _Host(timedelta(0))
    clock = _clock(tmp_path, host)
    clock.now()
    host.ahead = timedelta(seconds=30)  # the host's clock jumps (NTP step)
    assert (clock.now() - datetime.now(UTC)).total_seconds() > 29  # not read yet: the old offset
    host.mono += REFRESH
    assert abs((clock.now() - datetime.now(UTC)).total_seconds()) < 1.0


def test_an_unreachable_database_keeps_the_last_offset(tmp_path: Path) -> None:
    host = _Host(timedelta(seconds=-40))
    clock = _clock(tmp_path, host)
    clock.now()
    clock._sessions = make_session_factory(make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"))
    host.mono += REFRESH
    assert abs((clock.now() - datetime.now(UTC)).total_seconds()) < 1.0
