"""Engine and session factories for SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 32, pre_ping: bool = True,
                no_pool: bool = False) -> Engine:
    """`pre_ping`: test each pooled connection on checkout (one extra round trip). Workers turn it off:
    their tasks already retry a step on a database error, and a stale connection found that way
    invalidates the whole pool, so after a PostgreSQL restart only the first step per process fails.
    `max_overflow`: connections opened beyond `pool_size` when all are busy, closed again on return.
    `no_pool`: a connection per checkout, closed on return (a worker's heartbeat: its main process
    forks pool children, and a connection held across a fork would be shared with them)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        extra: dict[str, Any] = {"poolclass": NullPool} if no_pool else {}
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **extra)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if no_pool:
        return create_engine(url, poolclass=NullPool)
    return create_engine(url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=pre_ping,
                         pool_recycle=1800)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers (API, stats) run while a worker writes; busy_timeout makes writers queue
    # instead of failing when several worker processes commit at once.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
