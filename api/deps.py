"""What routes get from the app: the request-scoped SQL session and the services on `app.state`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, cast

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker

from intake import Intake


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


def get_session(request: Request) -> Iterator[Session]:
    with session_factory(request)() as session:
        yield session


def get_intake(request: Request) -> Intake:
    return cast(Intake, request.app.state.intake)


def get_enqueuer(request: Request) -> JobEnqueuer:
    return cast(JobEnqueuer, request.app.state.enqueuer)


def get_storage(request: Request) -> OutputReader:
    return cast(OutputReader, request.app.state.storage)
