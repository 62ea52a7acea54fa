"""Fixtures for the ops tests: a migrated database with keys, the real app on it, seeded jobs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from fastapi.testclient import TestClient
from ops_helpers import PRICE, Seeded, seed
from sqlalchemy.orm import Session, sessionmaker

from genqueue.bootstrap import Root
from genqueue.core.settings import Settings, load_settings
from genqueue.models.base import utcnow
from genqueue.models.db import make_engine, make_session_factory
from genqueue.models.keys import Role, create_key
from genqueue.models.migrate import upgrade
from tests.support.fakes import MemoryStorage, RecordingEnqueuer


@dataclass
class Ops:
    app: FastAPI
    client: TestClient
    sessions: sessionmaker[Session]
    settings: Settings
    storage: MemoryStorage
    keys: dict[str, str]
    key_ids: dict[str, str]
    seeded: Seeded

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}


def build(db_url: str, redis_url: str, data_dir: Path, png: bytes | None = None) -> Ops:
    engine = make_engine(db_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    keys: dict[str, str] = {}
    key_ids: dict[str, str] = {}
    with sessions.begin() as s:
        for name, role in (("alice", Role.SUBMIT), ("bob", Role.SUBMIT), ("ops", Role.OPS), ("admin", Role.ADMIN)):
            row, plaintext = create_key(s, name, role)
            keys[name], key_ids[name] = plaintext, row.id
    storage = MemoryStorage()
    seeded = seed(sessions, utcnow(), key_ids["alice"], key_ids["bob"], storage, png)
    settings = load_settings(DATABASE_URL=db_url, REDIS_URL=redis_url, GENQUEUE_DATA_DIR=str(data_dir),
                             SECRETS_KEY=Fernet.generate_key().decode(), GENQUEUE_PRICE_PER_SECOND=str(PRICE),
                             GENQUEUE_CREATE_RATE_PER_MIN="600")
    app = Root(settings, sessions=sessions, enqueuer=RecordingEnqueuer(), storage=storage).api_app()
    return Ops(app, TestClient(app), sessions, settings, storage, keys, key_ids, seeded)


@pytest.fixture
def ops(db_url: str, redis_url: str, tmp_path: Path) -> Iterator[Ops]:
    o = build(db_url, redis_url, tmp_path)
    with o.client:
        yield o
    o.sessions.kw["bind"].dispose()
