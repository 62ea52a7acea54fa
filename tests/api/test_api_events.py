"""Waits (`Prefer: wait`) and job event streams (SSE) on a real API served by uvicorn over loopback,
with real Redis and PostgreSQL. No worker runs here: the test moves jobs the way a worker does (a
compare-and-set in SQL, then an event in the stream); tests/e2e/test_events_e2e.py runs real workers."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from api_helpers import body, closed_port_url
from cryptography.fernet import Fernet
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from genqueue.api import events_hub
from genqueue.bootstrap import Root
from genqueue.core.events import STREAM, publish
from genqueue.core.settings import load_settings
from genqueue.models.db import make_engine, make_session_factory
from genqueue.models.keys import Role, create_key
from genqueue.models.migrate import upgrade
from genqueue.models.tables import Job
from tests.support.fakes import MemoryStorage, RecordingEnqueuer
from tests.support.sse import Frame, frames


@dataclass
class Served:
    url: str
    keys: dict[str, str]
    sessions: sessionmaker[Session]
    redis: redis.Redis

    def client(self, name: str, timeout: float = 20.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.keys[name]}"},
                            timeout=timeout)

    def create(self, name: str = "alice") -> str:
        with self.client(name) as c:
            resp = c.post("/v1/jobs", json=body())
        assert resp.status_code == 202, resp.text
        return str(resp.json()["id"])

    def finish(self, job_id: str, status: str = "succeeded", *, announce: bool = True) -> datetime:
        """What a worker does: the compare-and-set in SQL (committed), then the event."""
        now = datetime.now(UTC)
        with self.sessions.begin() as s:
            s.execute(update(Job).where(Job.id == job_id).values(status=status, finished_at=now))
        if announce:
            publish(self.redis, job_id, status)
        return now

    def move(self, job_id: str, status: str) -> None:
        with self.sessions.begin() as s:
            s.execute(update(Job).where(Job.id == job_id).values(status=status))
        publish(self.redis, job_id, status)

    def count(self) -> int:
        with self.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(Job)) or 0)


@contextmanager
def _serve(pg_url: str, redis_url: str, tmp_path: Path) -> Iterator[Served]:
    engine = make_engine(pg_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    keys: dict[str, str] = {}
    with sessions.begin() as s:
        for name, role in (("alice", Role.SUBMIT), ("bob", Role.SUBMIT), ("ops", Role.OPS)):
            keys[name] = create_key(s, name, role)[1]
    settings = load_settings(DATABASE_URL=pg_url, REDIS_URL=redis_url, GENQUEUE_DATA_DIR=str(tmp_path),
                             SECRETS_KEY=Fernet.generate_key().decode(), STORAGE_URL=f"file://{tmp_path}/out")
    app = Root(settings, enqueuer=RecordingEnqueuer(), storage=MemoryStorage()).api_app()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    client = redis.Redis.from_url(redis_url)
    try:
        yield Served(f"http://127.0.0.1:{port}", keys, sessions, client)
    finally:
        server.should_exit = True
        thread.join(15)
        client.close()
        engine.dispose()


@pytest.fixture
def served(pg_url: str, redis_url: str, tmp_path: Path) -> Iterator[Served]:
    with _serve(pg_url, redis_url, tmp_path) as s:
        yield s


def _later(seconds: float, fn: Any, *args: Any) -> threading.Thread:
    t = threading.Thread(target=lambda: (time.sleep(seconds), fn(*args)), daemon=True)
    t.start()
    return t


# --- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("prefer", ["wait=0", "wait=61", "wait=abc"])
def test_bad_prefer_is_422_naming_the_header_and_creates_nothing(served: Served, prefer: str) -> None:
    job_id = served.create()
    with served.client("alice") as c:
        got = c.get(f"/v1/jobs/{job_id}", headers={"Prefer": prefer})
        before = served.count()
        posted = c.post("/v1/jobs", json=body(), headers={"Prefer": prefer})
    for resp in (got, posted):
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["fields"][0]["field"] == "header.Prefer", resp.text
    assert served.count() == before  # the refused create left nothing behind


def test_bad_filter_and_bad_last_event_id_are_422(served: Served) -> None:
    with served.client("ops") as c:
        for params, field in (({"status": "done"}, "query.status"), ({"colour": "red"}, "query.colour"),
                              ({"metadata.": "x"}, "query.metadata")):
            resp = c.get("/v1/events", params=params)
            assert resp.status_code == 422, resp.text
            assert field in [f["field"] for f in resp.json()["error"]["fields"]], resp.text
        resp = c.get("/v1/events", headers={"Last-Event-ID": "yesterday"})
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["fields"][0]["field"] == "header.Last-Event-ID"


# --- waits ------------------------------------------------------------------------------------------

def test_wait_answers_at_its_limit_when_nothing_happens(served: Served) -> None:
    job_id = served.create()
    with served.client("alice") as c:
        started = time.monotonic()
        resp = c.get(f"/v1/jobs/{job_id}", headers={"Prefer": "wait=1"})
        took = time.monotonic() - started
        plain = c.get(f"/v1/jobs/{job_id}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "queued"
    assert resp.headers["Preference-Applied"] == "wait=1"
    assert 1.0 <= took < 1.8, took
    assert "Preference-Applied" not in plain.headers


def test_wait_answers_as_soon_as_the_job_ends(served: Served) -> None:
    job_id = served.create()
    marks: dict[str, datetime] = {}
    _later(0.5, lambda: marks.setdefault("finished", served.finish(job_id)))
    with served.client("alice") as c:
        resp = c.get(f"/v1/jobs/{job_id}", headers={"Prefer": "wait"})
    answered = datetime.now(UTC)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "succeeded"
    assert resp.headers["Preference-Applied"] == "wait=60"
    delay = (answered - marks["finished"]).total_seconds()
    print(f"finished -> answer: {delay * 1000:.1f} ms")
    assert delay < 0.5, delay  # event-driven: the re-check alone would take up to 2 s


def test_a_lost_event_is_covered_by_the_recheck(served: Served) -> None:
    job_id = served.create()
    _later(0.3, lambda: served.finish(job_id, "failed", announce=False))  # committed, never published
    with served.client("alice") as c:
        started = time.monotonic()
        resp = c.get(f"/v1/jobs/{job_id}", headers={"Prefer": "wait=20"})
        took = time.monotonic() - started
    assert resp.json()["status"] == "failed", resp.text
    assert took < events_hub.RECHECK_SECONDS + 1.5, took


def test_a_terminal_job_answers_at_once(served: Served) -> None:
    job_id = served.create()
    served.finish(job_id, "canceled")
    with served.client("alice") as c:
        started = time.monotonic()
        resp = c.get(f"/v1/jobs/{job_id}", headers={"Prefer": "wait=30"})
    assert resp.json()["status"] == "canceled" and time.monotonic() - started < 1.0


def test_wait_on_create_sees_the_api_own_cancel(served: Served) -> None:
    """POST with Prefer: wait holds the 202 until the job ends; a cancel of the queued job (the API's own
    write) is announced the same way a worker's is."""
    holder: dict[str, Any] = {}

    def cancel_newest() -> None:
        with served.sessions() as s:
            job_id = s.scalars(select(Job.id).order_by(Job.created_at.desc()).limit(1)).one()
        with served.client("alice") as c:
            holder["cancel"] = c.post(f"/v1/jobs/{job_id}/cancel")

    canceling = _later(0.8, cancel_newest)
    with served.client("alice") as c:
        started = time.monotonic()
        resp = c.post("/v1/jobs", json=body(), headers={"Prefer": "wait=20"})
        took = time.monotonic() - started
    canceling.join(20)  # the wait may answer before the cancel's own answer reaches its thread
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "canceled", resp.text
    assert resp.headers["Preference-Applied"] == "wait=20"
    assert holder["cancel"].status_code == 200, holder["cancel"].text
    assert 0.7 <= took < 2.0, took  # held until the cancel (its timer started just before the POST)


def test_a_wait_is_scoped_to_the_key(served: Served) -> None:
    job_id = served.create("alice")
    with served.client("bob") as bob, served.client("ops") as ops:
        started = time.monotonic()
        assert bob.get(f"/v1/jobs/{job_id}", headers={"Prefer": "wait=5"}).status_code == 404
        assert time.monotonic() - started < 1.0
        assert bob.get(f"/v1/jobs/{job_id}/events").status_code == 404
        served.finish(job_id)
        assert ops.get(f"/v1/jobs/{job_id}", headers={"Prefer": "wait=5"}).json()["status"] == "succeeded"


# --- event streams ------------------------------------------------------------------------------------

def _next(it: Iterator[Frame]) -> Frame:
    frame = next(it)
    assert frame.event == "job.updated" and frame.id, frame
    return frame


def test_job_stream_sends_the_state_then_each_change_in_order_then_ends(served: Served) -> None:
    job_id = served.create()
    with served.client("alice") as c, c.stream("GET", f"/v1/jobs/{job_id}/events") as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        it = frames(resp)
        first = _next(it)
        assert first.job["id"] == job_id and first.job["status"] == "queued"
        assert first.job["input"]["api_key"] == "***"
        for status in ("submitting", "running", "storing"):
            served.move(job_id, status)
            assert _next(it).job["status"] == status
        served.finish(job_id)
        last = _next(it)
        assert last.job["status"] == "succeeded"
        assert list(it) == []  # the stream ended after the terminal state
    ids = [first.id, last.id]
    assert all(i is not None for i in ids)


def test_events_are_scoped_to_the_key(served: Served) -> None:
    a, b = served.create("alice"), served.create("bob")
    with served.client("bob") as bob_c, bob_c.stream("GET", "/v1/events") as bob_s, \
            served.client("ops") as ops_c, ops_c.stream("GET", "/v1/events", params={"status": "failed"}) as ops_s:
        bob_it, ops_it = frames(bob_s), frames(ops_s)
        served.finish(a, "failed")
        served.move(b, "running")
        served.finish(b, "failed")
        # Two events of bob's job and none of alice's. The data is the job as read when the event is
        # delivered, so both may already show it failed.
        seen_by_bob = [_next(bob_it).job for _ in range(2)]
        assert [j["id"] for j in seen_by_bob] == [b, b] and seen_by_bob[-1]["status"] == "failed"
        seen_by_ops = [_next(ops_it).job for _ in range(2)]  # ops sees both, filtered to failed
        assert [j["id"] for j in seen_by_ops] == [a, b]


def test_resume_with_last_event_id_loses_nothing(served: Served) -> None:
    ids = [served.create() for _ in range(3)]
    received: list[Frame] = []
    with served.client("alice") as c:
        with c.stream("GET", "/v1/events") as resp:
            it = frames(resp)
            served.move(ids[0], "running")
            received.append(_next(it))
        # dropped; meanwhile more happens
        served.move(ids[1], "running")
        served.finish(ids[0])
        served.finish(ids[2], "failed")
        with c.stream("GET", "/v1/events", headers={"Last-Event-ID": str(received[-1].id)}) as resp:
            it = frames(resp)
            received += [_next(it) for _ in range(3)]
            served.finish(ids[1])
            received.append(_next(it))
    got = [(f.job["id"], f.job["status"]) for f in received]
    assert got == [(ids[0], "running"), (ids[1], "running"), (ids[0], "succeeded"), (ids[2], "failed"),
                   (ids[1], "succeeded")]
    stream_ids = [e[0].decode() for e in served.redis.xrange(STREAM)]
    sent = [f.id for f in received]
    assert sent == stream_ids[stream_ids.index(sent[0]):]  # every event since the first, in order, once


def test_with_redis_away_creates_work_and_waits_end_by_the_recheck(pg_url: str, tmp_path: Path) -> None:
    """Publishing never fails a write; a wait learns of the end from the SQL re-check instead."""
    with _serve(pg_url, closed_port_url(), tmp_path) as served:
        job_id = served.create()  # its event could not be published: the create is 202 all the same
        with served.sessions.begin() as s:
            s.execute(update(Job).where(Job.id == job_id).values(status="succeeded", finished_at=datetime.now(UTC)))
        with served.client("alice") as c:
            started = time.monotonic()
            resp = c.get(f"/v1/jobs/{job_id}", headers={"Prefer": "wait=20"})
            assert resp.json()["status"] == "succeeded", resp.text
            assert time.monotonic() - started < 1.0  # terminal at the first read
            other = served.create()
            _later(0.3, lambda: served.finish(other, "failed", announce=False))
            started = time.monotonic()
            resp = c.get(f"/v1/jobs/{other}", headers={"Prefer": "wait=20"})
            assert resp.json()["status"] == "failed", resp.text
            assert time.monotonic() - started < events_hub.RECHECK_SECONDS + 1.5
            assert c.get(f"/v1/jobs/{other}/events").status_code == 503


def test_a_burst_of_waits_larger_than_the_pool_and_the_threads_is_answered(served: Served) -> None:
    """80 waits at once: more than the API's 37 pooled connections and 40 threads. Without admission
    (api/admission.py) every thread sat in a key lookup blocked on the empty pool while the requests
    holding the connections queued for a thread: nothing answered before the 30 s pool timeout."""
    ids = [served.create() for _ in range(80)]

    async def burst() -> list[float]:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(base_url=served.url, headers={"Authorization": f"Bearer {served.keys['alice']}"},
                                     timeout=60, limits=limits) as c:
            async def one(job_id: str) -> float:
                started = time.monotonic()
                resp = await c.get(f"/v1/jobs/{job_id}", headers={"Prefer": "wait=2"})
                assert resp.status_code == 200 and resp.json()["status"] == "queued", resp.text
                return time.monotonic() - started

            return await asyncio.gather(*(one(i) for i in ids))

    took = asyncio.run(burst())
    assert min(took) >= 2.0 and max(took) < 15.0, (min(took), max(took))
