"""Waits and event streams with everything real: `genqueue api` and `genqueue worker` as processes on
PostgreSQL and Redis, predictions on the simulator, every call over loopback HTTP."""

from __future__ import annotations

import statistics
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from e2e_support import VERSION, job_input, live_stack

from genqueue.core.events import STREAM
from genqueue.models.status import TERMINAL_NAMES
from tests.support.sse import Frame, frames

ORDER = ["queued", "submitting", "running", "storing", "succeeded"]


def _body() -> dict[str, Any]:
    return {"version": VERSION, "input": job_input(f"events e2e {uuid.uuid4().hex}")}


def _delay_ms(job: dict[str, Any], answered: datetime) -> float:
    return (answered - datetime.fromisoformat(job["finished_at"])).total_seconds() * 1000


@pytest.mark.timeout(300)
def test_waits_and_event_streams_with_real_workers(tmp_path: Path, pg_url: str, redis_url: str) -> None:
    with live_stack(tmp_path, pg_url, redis_url, concurrency=2) as live, live.client() as client:
        # --- Prefer: wait on POST: the 202 carries the finished job ---------------------------------
        resp = client.post("/v1/jobs", json=_body(), headers={"Prefer": "wait=30"})
        answered = datetime.now(UTC)
        assert resp.status_code == 202, resp.text
        job = resp.json()
        assert job["status"] == "succeeded" and resp.headers["Preference-Applied"] == "wait=30", job
        delays = [_delay_ms(job, answered)]

        # --- Prefer: wait on GET, eight waiters at once: each answers as soon as its job ends -------
        ids = [client.post("/v1/jobs", json=_body()).json()["id"] for _ in range(8)]
        results: dict[str, tuple[dict[str, Any], datetime]] = {}

        def wait_for(job_id: str) -> None:
            with live.client() as c:
                r = c.get(f"/v1/jobs/{job_id}", headers={"Prefer": "wait=60"}, timeout=70)
                results[job_id] = (r.json(), datetime.now(UTC))

        threads = [threading.Thread(target=wait_for, args=(i,)) for i in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert sorted(results) == sorted(ids)
        for done, at in results.values():
            assert done["status"] == "succeeded", done
            delays.append(_delay_ms(done, at))
        print(f"finished_at -> answer over {len(delays)} waits: p50 {statistics.median(delays):.1f} ms, "
              f"max {max(delays):.1f} ms")
        assert statistics.median(delays) < 200 and max(delays) < 1500, delays

        # --- one job's stream: its states in order, then the end ----------------------------------
        job_id = client.post("/v1/jobs", json=_body()).json()["id"]
        with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=30) as resp:
            seen = list(frames(resp))
        statuses = [f.job["status"] for f in seen]
        assert statuses[-1] == "succeeded", statuses
        assert [ORDER.index(s) for s in statuses] == sorted(ORDER.index(s) for s in statuses), statuses
        _increasing(seen)

        # --- every job: drop the connection midway, resume with Last-Event-ID, lose nothing ----------
        received: list[Frame] = []
        with client.stream("GET", "/v1/events", timeout=30) as resp:
            it = frames(resp)
            batch = client.post("/v1/jobs/batch", json={"jobs": [_body() for _ in range(6)]})
            assert batch.status_code == 202, batch.text
            wanted = {j["id"] for j in batch.json()["jobs"]}
            received += [next(it) for _ in range(4)]
        # disconnected while the workers go on
        with client.stream("GET", "/v1/events", headers={"Last-Event-ID": str(received[-1].id)},
                           timeout=30) as resp:
            for frame in frames(resp):
                received.append(frame)
                ended = {f.job["id"] for f in received if f.job["status"] in TERMINAL_NAMES}
                if wanted <= ended:
                    break
        _increasing(received)
        assert all(f.event == "job.updated" and f.job["id"] in wanted for f in received)
        stream = redis.Redis.from_url(redis_url)
        try:
            entries = [e[0].decode() for e in stream.xrange(STREAM, min=str(received[0].id), max=str(received[-1].id))]
        finally:
            stream.close()
        assert [f.id for f in received] == entries  # every event in between, once, in order
        assert {f.job["id"] for f in received if f.job["status"] == "succeeded"} == wanted
        assert httpx.get(f"{live.api_url}/v1/events", timeout=10).status_code == 401


def _increasing(seen: list[Frame]) -> None:
    keys = [tuple(int(p) for p in str(f.id).split("-")) for f in seen]
    assert keys == sorted(set(keys)), [f.id for f in seen]
