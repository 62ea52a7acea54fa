"""What routes get from the app: the request-scoped SQL session and the services on `app.state`.

`get_session` and `get_intake` (on every create) are `async` so FastAPI calls them on the event loop: a
sync dependency costs a trip through the threadpool (~0.1 ms of CPU each). Neither does I/O, except
closing a session that still has a transaction open, which goes to the threadpool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Protocol, cast

from fastapi import Request
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from genqueue.core.settings import Settings
from genqueue.intake import Intake

if TYPE_CHECKING:
    import redis


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


class OutputStore(OutputReader, Protocol):
    """And deleting (`DELETE /v1/jobs/{id}/outputs`)."""

    def delete(self, key: str) -> None: ...


class ApiParts(Protocol):
    """What the API is built from: `genqueue.bootstrap.Root` provides it, tests fill it with fakes."""

    @property
    def settings(self) -> Settings: ...
    @property
    def sessions(self) -> sessionmaker[Session]: ...
    @property
    def enqueuer(self) -> JobEnqueuer: ...
    @property
    def storage(self) -> OutputReader: ...
    @property
    def redis(self) -> redis.Redis: ...
    @property
    def intake(self) -> Intake: ...

    def close(self) -> None: ...


SCOPE_SESSION = "genqueue.session"  # a session `api.auth.AuthBeforeBody` opened for this request


def session_factory(request: Request) -> sessionmaker[Session]:
    return cast(sessionmaker[Session], request.app.state.session_factory)


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One session per request, shared by the key lookup and the route (FastAPI caches the dependency),
    so a request checks out one pooled connection. Creating a session does no I/O.

    On PostgreSQL the key lookup starts this session in autocommit (`api.auth`): each statement
    commits on its own and `commit()` costs no round trip. That is only atomic while a request writes
    at most one statement (a compare-and-set UPDATE), so `single_write` makes a second one an error
    on every database; a route needing several writes to be atomic uses a session of its own
    (`session_factory(request).begin()`), as intake does.

    A request with a body was authenticated before its body was read (`api.auth.AuthBeforeBody`): its
    key was looked up in a session that layer opened, and that session is this request's session."""
    opened: Session | None = request.scope.get(SCOPE_SESSION)
    session = opened if opened is not None else single_write(session_factory(request)())
    try:
        yield session
    finally:
        await close_session(session)


async def close_session(session: Session) -> None:
    """Close without blocking the event loop; closing twice is harmless (the second does nothing)."""
    if session.in_transaction():
        await run_in_threadpool(session.close)  # may send a ROLLBACK
    else:
        session.close()


class SeveralWrites(RuntimeError):
    """A request session was asked for a second write statement (see `get_session`)."""


def single_write(session: Session) -> Session:
    """Refuse a second INSERT/UPDATE/DELETE through this session: on the API's autocommit connection
    two writes would commit one by one, and a failure between them would leave half of them."""

    def guard(state: ORMExecuteState) -> None:
        if not (state.is_insert or state.is_update or state.is_delete):
            return
        if state.session.info.get("wrote"):
            raise SeveralWrites("a request session writes one statement at most; several atomic writes "
                                "need session_factory(request).begin()")
        state.session.info["wrote"] = True

    event.listen(session, "do_orm_execute", guard)
    return session


async def get_intake(request: Request) -> Intake:
    return cast(Intake, request.app.state.intake)


def get_enqueuer(request: Request) -> JobEnqueuer:
    return cast(JobEnqueuer, request.app.state.enqueuer)


def get_storage(request: Request) -> OutputReader:
    return cast(OutputReader, request.app.state.storage)


def get_output_store(request: Request) -> OutputStore:
    return cast(OutputStore, request.app.state.storage)
