"""Fixtures for the API tests: the real app on a migrated database (SQLite and PostgreSQL) and real Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import Api, MakeApi
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from genqueue.bootstrap import Root
from genqueue.core.settings import Settings, load_settings
from genqueue.models.db import make_engine, make_session_factory
from genqueue.models.keys import Role, create_key
from genqueue.models.migrate import upgrade
from tests.support.fakes import MemoryStorage, RecordingEnqueuer


def make_settings(db_url: str, redis_url: str, data_dir: Path, **env: Any) -> Settings:
    return load_settings(DATABASE_URL=db_url, REDIS_URL=redis_url, GENQUEUE_DATA_DIR=str(data_dir),
                         SECRETS_KEY=Fernet.generate_key().decode(), STORAGE_URL=f"file://{data_dir}/out", **env)


@pytest.fixture
def make_api(tmp_path: Path, redis_url: str) -> Iterator[MakeApi]:
    """Builds the app the way production does (engine and Redis from settings); enqueuer/storage are fakes."""
    cleanups: list[Callable[[], None]] = []

    def factory(db_url: str, *, redis: str | None = None, raise_errors: bool = True,
                real_storage: bool = False, **env: Any) -> Api:
        engine = make_engine(db_url)
        upgrade(engine)
        sessions = make_session_factory(engine)
        keys: dict[str, str] = {}
        key_ids: dict[str, str] = {}
        with sessions.begin() as s:
            for name, role in (("alice", Role.SUBMIT), ("bob", Role.SUBMIT), ("ops", Role.OPS),
                               ("admin", Role.ADMIN)):
                row, plaintext = create_key(s, name, role)
                keys[name], key_ids[name] = plaintext, row.id
        enqueuer, storage = RecordingEnqueuer(), MemoryStorage()
        settings = make_settings(db_url, redis or redis_url, tmp_path, **env)
        # real_storage: the app builds its storage from STORAGE_URL (file://<tmp>/out), like production.
        fakes: dict[str, Any] = {"enqueuer": enqueuer} if real_storage else {"enqueuer": enqueuer, "storage": storage}
        app = Root(settings, **fakes).api_app()
        client = TestClient(app, raise_server_exceptions=raise_errors)
        client.__enter__()
        cleanups.append(lambda: client.__exit__(None, None, None))
        cleanups.append(engine.dispose)
        return Api(app, client, sessions, enqueuer, storage, keys, key_ids)

    yield factory
    for cleanup in cleanups:
        cleanup()


@pytest.fixture
def api(make_api: MakeApi, db_url: str) -> Api:
    """The app on SQLite and on PostgreSQL (the test runs once per database)."""
    return make_api(db_url)


@pytest.fixture
def sqlite_api(make_api: MakeApi, sqlite_url: str) -> Api:
    return make_api(sqlite_url)

