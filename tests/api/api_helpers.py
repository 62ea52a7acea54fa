"""Shared pieces of the API tests: request bodies, the app handle, DB helpers (fakes: tests.support.fakes)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from genqueue.models.tables import Job
from tests.support.fakes import MemoryStorage, RecordingEnqueuer

SECRET = "sk_live_SUPERSECRET_value_123"
JIGSAW = "jigsawstack/image-generation"
HEX = "43d5bce2e1c97fa1e7d8996187a85cd5c882787989091af3b135c7a16ca23b79"
VERSION = f"{JIGSAW}:{HEX}"


def body(prompt: str = "a lighthouse at dusk", **input_extra: Any) -> dict[str, Any]:
    return {"version": VERSION, "input": {"prompt": prompt, "api_key": SECRET, **input_extra}}


@dataclass
class Api:
    app: FastAPI
    client: TestClient
    sessions: sessionmaker[Session]
    enqueuer: RecordingEnqueuer
    storage: MemoryStorage
    keys: dict[str, str] = field(default_factory=dict)  # name -> plaintext
    key_ids: dict[str, str] = field(default_factory=dict)  # name -> id

    @property
    def queued(self) -> list[str]:
        """Job ids waiting in the scheduler's lanes (real Redis), oldest first: what intake enqueued."""
        from genqueue.sched.ready import ReadyQueues

        lanes = ReadyQueues(self.app.state.redis).lanes(100_000)
        return [job_id for _, job_id in sorted((at, job_id) for lane in lanes for job_id, at in lane.heads)]

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}

    def create(self, name: str = "alice", payload: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        resp = self.client.post("/v1/jobs", json=payload or body(), headers=self.auth(name), **kw)
        assert resp.status_code == 202, resp.text
        return dict(resp.json())

    def set_job(self, job_id: str, **values: Any) -> None:
        with self.sessions.begin() as s:
            s.execute(update(Job).where(Job.id == job_id).values(**values))

    def job(self, job_id: str) -> Job:
        with self.sessions() as s:
            job = s.get(Job, job_id)
            assert job is not None
            return job

    def count_jobs(self) -> int:
        with self.sessions() as s:
            return len(s.query(Job.id).all())


def no_secret(resp_text: str) -> bool:
    return SECRET not in resp_text and json.dumps(SECRET) not in resp_text


def closed_port_url() -> str:
    """A redis:// URL on a loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


# What the make_api fixture returns: build the app with settings overrides.
MakeApi = Callable[..., Api]
