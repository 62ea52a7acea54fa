"""Fixtures of the security tests: a trap HTTP server on loopback, and the real API app with keys.

The trap records every request it gets (method, path, headers) and answers with whatever the test
configures (a PNG by default, or a redirect). A test proves "the refused host is never contacted" by
asserting the trap's request list is empty.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from genqueue.bootstrap import Root
from genqueue.core.settings import Settings, load_settings
from genqueue.models.db import make_engine, make_session_factory
from genqueue.models.keys import Role, create_key
from genqueue.models.migrate import upgrade

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
VERSION = "jigsawstack/image-generation:43d5bce2e1c97fa1e7d8996187a85cd5c882787989091af3b135c7a16ca23b79"


# ---- trap server -----------------------------------------------------------------------------------


@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]


Answer = Callable[[str], tuple[int, dict[str, str], bytes]]


def _png(_path: str) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "image/png"}, PNG


@dataclass
class TrapServer:
    """A loopback HTTP server in a thread that records every request."""

    answer: Answer = _png
    hits: list[Hit] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def url(self, host: str = "127.0.0.1", path: str = "/") -> str:
        return f"http://{host}:{self.port}{path}"

    def start(self) -> TrapServer:
        trap = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                trap.hits.append(Hit(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                status, headers, body = trap.answer(self.path)
                headers = dict(headers)
                drip = headers.pop("X-Drip", None)  # "<seconds>": no length, 256-byte chunks, a pause each
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if drip is None:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if drip is None:
                    self.wfile.write(body)
                    return
                try:
                    for i in range(0, len(body), 256):
                        self.wfile.write(body[i:i + 256])
                        self.wfile.flush()
                        time.sleep(float(drip))
                except OSError:
                    pass  # the client gave up

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="trap", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def trap() -> Iterator[TrapServer]:
    server = TrapServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_trap() -> Iterator[Callable[[Answer], TrapServer]]:
    servers: list[TrapServer] = []

    def factory(answer: Answer = _png) -> TrapServer:
        server = TrapServer(answer=answer).start()
        servers.append(server)
        return server

    yield factory
    for s in servers:
        s.stop()


# ---- Redis ---------------------------------------------------------------------------------------


@pytest.fixture
def sec_redis_url(redis_url: str) -> str:
    """A DB index of the test session's private Redis (tests/conftest.py), so MONITOR in the leak
    search sees only this session's traffic."""
    return redis_url


# ---- the API with keys -----------------------------------------------------------------------------


@dataclass
class SecApi:
    app: FastAPI
    client: TestClient
    sessions: sessionmaker[Session]
    settings: Settings
    keys: dict[str, str]
    key_ids: dict[str, str]

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}


def job_body(prompt: str = "a lighthouse at dusk", api_key: str = "sk_test_value", **extra: Any) -> dict[str, Any]:
    return {"version": VERSION, "input": {"prompt": prompt, "api_key": api_key, **extra}}


def build_api(db_url: str, redis_url: str, data_dir: Path, **env: Any) -> tuple[SecApi, Callable[[], None]]:
    """The production app (engine, Redis, Celery enqueuer and file storage built from settings)."""
    engine = make_engine(db_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    keys: dict[str, str] = {}
    key_ids: dict[str, str] = {}
    with sessions.begin() as s:
        for name, role in (("alice", Role.SUBMIT), ("bob", Role.SUBMIT), ("ops", Role.OPS), ("admin", Role.ADMIN)):
            row, plaintext = create_key(s, name, role)
            keys[name], key_ids[name] = plaintext, row.id
    settings = load_settings(_env_file=None, DATABASE_URL=db_url, REDIS_URL=redis_url,
                             GENQUEUE_DATA_DIR=str(data_dir), SECRETS_KEY=Fernet.generate_key().decode(),
                             STORAGE_URL=f"file://{data_dir}/out", **env)
    app = Root(settings).api_app()
    client = TestClient(app, raise_server_exceptions=False)
    client.__enter__()

    def close() -> None:
        client.__exit__(None, None, None)
        engine.dispose()

    return SecApi(app, client, sessions, settings, keys, key_ids), close


@pytest.fixture
def sec_api(sqlite_url: str, sec_redis_url: str, tmp_path: Path) -> Iterator[SecApi]:
    api, close = build_api(sqlite_url, sec_redis_url, tmp_path)
    try:
        yield api
    finally:
        close()
