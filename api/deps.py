"""What routes get from the app: the request-scoped SQL session and the services on `app.state`.

`get_session` and `get_intake` (on every create) are `async` so FastAPI calls them on the event loop: a
sync dependency costs a trip through the threadpool (~0.1 ms of CPU each). Neither does I/O, except
closing a session that still has a transaction open, which goes to the threadpool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol, cast

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from genqueue.intake import Intake


class JobEnqueuer(Protocol):
    """The part of `worker.enqueue.Enqueuer` the API uses (tests pass a recording fake)."""

    def submit(self, job_ids: list[str]) -> None: ...

    def __call__(self, job_ids: list[str]) -> None: ...

    def cancel(self, job_id: str) -> None: ...

    def poll(self, job_id: str, countdown: float = 0.0) -> None: ...

    def observe(self, job_id: str, prediction: dict[str, Any]) -> None: ...


class OutputReader(Protocol):
    """The part of `storage.Storage` the API uses."""

    def open(self, key: str) -> tuple[Iterator[bytes], str, int]: ...


def session_factory(request: Request) -> sessionmaker[Session]:
    return cast(sessionmaker[Session], request.app.state.session_factory)


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One session per request, shared by the key lookup and the route (FastAPI caches the dependency),
    so a request checks out one pooled connection. Creating a session does no I/O.

    On PostgreSQL the key lookup starts this session in autocommit (`api.auth`): each statement
    commits on its own and `commit()` costs no round trip. Every route's writes are single statements
    (a compare-and-set UPDATE, intake's one INSERT or COPY); a route needing several writes to be
    atomic must use a session of its own (`session_factory(request).begin()`)."""
    session = session_factory(request)()
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)  # may send a ROLLBACK
        else:
            session.close()


async def get_intake(request: Request) -> Intake:
    return cast(Intake, request.app.state.intake)


def get_enqueuer(request: Request) -> JobEnqueuer:
    return cast(JobEnqueuer, request.app.state.enqueuer)


def get_storage(request: Request) -> OutputReader:
    return cast(OutputReader, request.app.state.storage)
