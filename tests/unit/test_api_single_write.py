"""The API's request session refuses a second write statement (it runs in autocommit on PostgreSQL,
where two writes would not be atomic); reads are free, and a session of its own is not limited."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update

from genqueue.api.deps import SeveralWrites, single_write
from genqueue.models.db import make_engine, make_session_factory
from genqueue.models.migrate import upgrade
from genqueue.models.tables import Job


def test_second_write_of_a_request_session_is_refused(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/db.sqlite")
    upgrade(engine)
    sessions = make_session_factory(engine)
    stmt = update(Job).where(Job.id == "nope").values(polls=1)
    with single_write(sessions()) as session:
        session.execute(select(Job.id))
        session.execute(stmt)
        session.execute(select(Job.id))  # reads after the write are fine
        with pytest.raises(SeveralWrites, match="one statement at most"):
            session.execute(stmt)
    with sessions.begin() as session:  # a transaction of its own: as many writes as it likes
        session.execute(stmt)
        session.execute(stmt)
    engine.dispose()
