"""`genqueue.client` against a live stack: `genqueue api` and `genqueue worker` as processes on
PostgreSQL and Redis, predictions on the simulator, every call over loopback HTTP. Both clients: run
(like replicate.run), submit/wait/get/cancel, list pages, downloads, events, batches; and bad input
raising the exception with the API's code and fields."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from e2e_support import PNG_SIGNATURE, VERSION, LiveStack, job_input, live_stack

from genqueue.client import (
    AsyncClient,
    AuthenticationError,
    ChecksumMismatch,
    Client,
    JobCanceledError,
    JobFailedError,
    NotFoundError,
    ValidationError,
    WaitTimeout,
)
from genqueue.client.outcome import outputs_or_raise

pytestmark = pytest.mark.timeout(300)


class CountingTransport(httpx.HTTPTransport):
    """httpx's real transport, recording each request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, str | None]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.path, request.headers.get("prefer")))
        return super().handle_request(request)


def _sync_part(live: LiveStack, tmp: Path) -> None:
    with Client(live.api_url, live.key) as gq:
        # --- run: submit + wait + outputs as file-like objects ------------------------------------
        started = time.monotonic()
        [image] = gq.run(VERSION, job_input("a lighthouse at dusk"))
        print(f"run() answered in {time.monotonic() - started:.2f} s")
        data = image.read()
        assert data.startswith(PNG_SIGNATURE) and hashlib.sha256(data).hexdigest() == image.sha256
        assert image.url.endswith("/outputs/0") and image.size == len(data)
        saved = image.save(tmp / "lighthouse.png")
        assert saved.read_bytes() == data and not list(tmp.glob(".lighthouse.png.*"))

        # --- bad input: the API's code and fields on the exception, nothing accepted --------------
        with pytest.raises(ValidationError) as bad:
            gq.submit(VERSION, {"prompt": "", "steps": 500})
        assert bad.value.status == 422 and bad.value.code == "validation_error", bad.value
        assert bad.value.reasons("input.api_key") == ["is required"], bad.value.fields
        assert bad.value.reasons("input.steps") and bad.value.reasons("input.prompt"), bad.value.fields
        with pytest.raises(ValidationError) as bad_version:
            gq.submit("owner/name:latest", {"prompt": "x"})
        assert bad_version.value.fields and "version" in str(bad_version.value)
        with pytest.raises(NotFoundError) as missing:
            gq.get("0" * 32)
        assert missing.value.code == "not_found"
        with pytest.raises(AuthenticationError) as unauth, Client(live.api_url, "gq_fake_not_a_key") as stranger:
            stranger.get("0" * 32)
        assert unauth.value.status == 401 and unauth.value.code

        # --- submit, events of one job, wait, list across pages with a metadata filter ------------
        tag = uuid.uuid4().hex[:8]
        jobs = [gq.submit(VERSION, job_input(f"list {tag} {i}"), metadata={"run": tag}) for i in range(3)]
        statuses = [e.job.status for e in gq.events(jobs[0])]
        # In order, ending with the end (two quick changes may both show the later state: README).
        order = ["queued", "submitting", "running", "storing", "succeeded"]
        assert statuses[-1] == "succeeded" and statuses == sorted(statuses, key=order.index), statuses
        done = [gq.wait(j, timeout=60) for j in jobs]
        assert {j.status for j in done} == {"succeeded"}
        pages = list(gq.list_pages(metadata={"run": tag}, limit=2))
        assert [len(p.jobs) for p in pages] == [2, 1]
        assert [j.id for j in gq.list(metadata={"run": tag}, limit=2)] == [j.id for j in reversed(jobs)]
        assert gq.download(done[1].id, 0).read().startswith(PNG_SIGNATURE)

        # --- stored bytes changed behind the API's back: read() and save() refuse them -------------
        stored = Path(urlsplit(done[2].raw["outputs"][0]["storage_uri"]).path)  # admin key: file:// here
        stored.write_bytes(bytes(b ^ 0xFF for b in stored.read_bytes()))
        with pytest.raises(ChecksumMismatch):
            gq.download(done[2], 0).read()
        with pytest.raises(ChecksumMismatch):
            gq.download(done[2], 0).save(tmp / "tampered.png")
        assert not list(tmp.glob("*tampered.png*"))  # neither the file nor its partial copy

        # --- a failed job: run raises with the job's error code and message -----------------------
        live.set_sim(fail_rate=1.0)
        try:
            with pytest.raises(JobFailedError) as failed:
                gq.run(VERSION, job_input("doomed"))
        finally:
            live.set_sim(fail_rate=0.0)
        assert failed.value.job.status == "failed" and failed.value.code and failed.value.message
        print(f"failed job: {failed.value}")

        # --- wait is held reads, not polling: a 3 s prediction costs one GET ------------------------
        live.set_sim(predict_seconds=3.0)
        counting = CountingTransport()
        try:
            with Client(live.api_url, live.key, transport=counting) as counted:
                job = counted.submit(VERSION, job_input("three seconds"))
                assert counted.wait(job, timeout=60).status == "succeeded"
        finally:
            live.set_sim(predict_seconds=0.5)
        assert counting.sent == [("POST", "/v1/jobs", None), ("GET", f"/v1/jobs/{job.id}", "wait=60")], counting.sent

        # --- a timeout shorter than the prediction, then cancel -----------------------------------
        live.set_sim(predict_seconds=30.0)
        try:
            slow = gq.submit(VERSION, job_input("slow"))
            t0 = time.monotonic()
            with pytest.raises(WaitTimeout) as late:
                gq.wait(slow, timeout=2)
            assert 1.5 < time.monotonic() - t0 < 5 and not late.value.job.terminal
            gq.cancel(slow)
            canceled = gq.wait(slow, timeout=60)
            assert canceled.status == "canceled", canceled
            with pytest.raises(JobCanceledError):
                outputs_or_raise(canceled)
        finally:
            live.set_sim(predict_seconds=0.5)

        # --- a batch: NDJSON streamed, a refused line, results in input order ---------------------
        rows: list[dict[str, Any]] = [{"version": VERSION, "input": job_input(f"batch {tag} {i}")} for i in range(3)]
        rows.append({"version": VERSION, "input": {"prompt": "no key"}})
        batch = gq.batches.create(rows, metadata={"run": tag})
        assert batch.counts["total"] == 3 and [(e.line, e.field) for e in batch.errors] == [(4, "input.api_key")]
        results = list(gq.batches.results(batch.id))
        assert [r.line for r in results] == [1, 2, 3, 4] and results[3].status == "rejected"
        for r in results[:3]:
            assert r.id is not None and gq.wait(r.id, timeout=60).status == "succeeded"
        assert gq.batches.get(batch.id).counts["succeeded"] == 3
        assert all(r.outputs[0].sha256 for r in list(gq.batches.results(batch.id))[:3])
        assert batch.id in [b.id for b in gq.batches.list()]
        with pytest.raises(ValidationError) as all_or_nothing:
            gq.batches.create(rows, all_or_nothing=True)
        assert all_or_nothing.value.code == "validation_error", all_or_nothing.value


async def _async_part(live: LiveStack) -> None:
    async with AsyncClient(live.api_url, live.key) as gq:
        outputs = await gq.run(VERSION, job_input("an async lighthouse"))
        assert (await outputs[0].read()).startswith(PNG_SIGNATURE)
        with pytest.raises(ValidationError) as bad:
            await gq.submit(VERSION, {"prompt": "x"})
        assert bad.value.reasons("input.api_key") == ["is required"]
        tag = uuid.uuid4().hex[:8]
        events = gq.events(metadata={"run": tag})
        first = asyncio.ensure_future(anext(events))  # the all-jobs stream is open before the batch exists
        await asyncio.sleep(0.5)
        batch = await gq.batches.create([{"version": VERSION, "input": job_input(f"async {tag} {i}")}
                                         for i in range(2)], metadata={"run": tag})
        ended: set[str] = set()
        event = await asyncio.wait_for(first, 60)
        while True:
            if event.job.terminal:
                ended.add(event.job.id)
            if len(ended) == 2:
                break
            event = await asyncio.wait_for(anext(events), 60)
        await events.aclose()
        assert {r.id async for r in gq.batches.results(batch.id)} == ended
        assert [j.id async for j in gq.list(metadata={"run": tag}, limit=1)] and (await gq.batches.get(batch.id))


def test_client_against_a_live_stack(tmp_path: Path, pg_url: str, redis_url: str) -> None:
    with live_stack(tmp_path, pg_url, redis_url, concurrency=2) as live:
        _sync_part(live, tmp_path)
        asyncio.run(_async_part(live))
