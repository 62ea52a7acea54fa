"""`AsyncClient`: the same API as `Client` for asyncio code (httpx.AsyncClient); requests from `calls`."""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Unpack

import httpx

from genqueue.client import calls
from genqueue.client.errors import EventStreamError, TransportError, WaitTimeout
from genqueue.client.files import AsyncFileOutput
from genqueue.client.outcome import outputs_or_raise
from genqueue.client.sse import EventParser, job_event
from genqueue.client.sync import DEFAULT_TIMEOUT, MAX_RESUMES, default_headers
from genqueue.client.types import Batch, BatchResult, Event, Job, JobPage


async def _aiter(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:  # httpx.AsyncClient streams only async iterables
        yield chunk


class AsyncClient:
    """`async with AsyncClient(base_url, api_key) as gq: job = await gq.wait(await gq.submit(...))`.
    Every method mirrors `Client`'s (same arguments, same exceptions)."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._http = httpx.AsyncClient(base_url=base_url, headers=default_headers(api_key), timeout=timeout,
                                       transport=transport)
        self.batches = AsyncBatches(self)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _json(self, call: calls.Call, content: Iterable[bytes] | None = None) -> Any:
        try:
            resp = await self._http.request(
                call.method, call.path, params=call.params, headers=dict(call.headers), json=call.json,
                content=None if content is None else _aiter(content), timeout=calls.timeout_for(call, self._timeout))
        except httpx.TransportError as exc:
            raise TransportError(f"{call.method} {call.path}: {exc}") from exc
        calls.check(resp)
        return resp.json()

    async def submit(self, version_or_model: str | None = None, input: Mapping[str, Any] | None = None, *,
                     wait: int | None = None, **options: Unpack[calls.SubmitOptions]) -> Job:
        return Job.from_json(await self._json(calls.submit(version_or_model, input or {}, options, wait)))

    async def get(self, job: Job | str) -> Job:
        return Job.from_json(await self._json(calls.get(job)))

    async def wait(self, job: Job | str, timeout: float | None = None) -> Job:
        """The job once terminal: `Prefer: wait=60` reads in a row, never a sleep (see `Client.wait`)."""
        if isinstance(job, Job) and job.terminal:
            return job
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0 and isinstance(job, Job):
                raise WaitTimeout(job, timeout or 0.0)
            job = Job.from_json(await self._json(calls.get(job, calls.wait_step(remaining))))
            if job.terminal:
                return job

    async def cancel(self, job: Job | str) -> Job:
        return Job.from_json(await self._json(calls.cancel(job)))

    async def download(self, job: Job | str, index: int = 0) -> AsyncFileOutput:
        found = job if isinstance(job, Job) else await self.get(job)
        info = next((o for o in found.outputs if o.index == index), None)
        if info is None:
            raise IndexError(f"job {found.id} has no output {index} (status {found.status})")
        return AsyncFileOutput(self._http, found.id, info)

    async def run(self, version_or_model: str | None = None, input: Mapping[str, Any] | None = None, *,
                  timeout: float | None = None,
                  **options: Unpack[calls.SubmitOptions]) -> builtins.list[AsyncFileOutput]:
        started = time.monotonic()
        job = await self.submit(version_or_model, input, wait=calls.wait_step(timeout), **options)
        job = await self.wait(job, None if timeout is None else timeout - (time.monotonic() - started))
        return [AsyncFileOutput(self._http, job.id, o) for o in outputs_or_raise(job)]

    async def list_pages(self, *, status: str | None = None, model: str | None = None, priority: int | None = None,
                         metadata: Mapping[str, str] | None = None, limit: int = 50,
                         include_input: bool = False) -> AsyncIterator[JobPage]:
        cursor: str | None = None
        while True:
            page = JobPage.from_json(await self._json(calls.list_jobs(
                cursor, status=status, model=model, priority=priority, metadata=metadata, limit=limit,
                include_input=include_input)))
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def list(self, *, status: str | None = None, model: str | None = None, priority: int | None = None,
                   metadata: Mapping[str, str] | None = None, limit: int = 50,
                   include_input: bool = False) -> AsyncIterator[Job]:
        async for page in self.list_pages(status=status, model=model, priority=priority, metadata=metadata,
                                          limit=limit, include_input=include_input):
            for job in page.jobs:
                yield job

    async def events(self, job: Job | str | None = None, *, status: Sequence[str] = (), batch: str | None = None,
                     metadata: Mapping[str, str] | None = None,
                     last_event_id: str | None = None) -> AsyncIterator[Event]:
        last_id, last_job, empty = last_event_id, None, 0
        while True:
            call = calls.events(job, status=status, batch=batch, metadata=metadata, last_event_id=last_id)
            got = False
            try:
                async with self._http.stream(call.method, call.path, params=call.params, headers=dict(call.headers),
                                             timeout=calls.timeout_for(call, self._timeout)) as resp:
                    if resp.status_code >= 400:
                        await resp.aread()
                        calls.check(resp)
                    parser = EventParser()
                    async for line in resp.aiter_lines():
                        raw = parser.feed(line)
                        if raw is None:
                            continue
                        last_id = raw.id or last_id
                        event = job_event(raw)
                        if event is not None:
                            got, last_job = True, event.job
                            yield event
            except httpx.TransportError as exc:
                if empty >= MAX_RESUMES:
                    raise EventStreamError(f"event stream lost: {exc}") from exc
            if not calls.resume_events(job is not None, last_job):
                return
            empty = 0 if got else empty + 1
            if empty > MAX_RESUMES:
                raise EventStreamError("the event stream keeps ending without events")


class AsyncBatches:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(self, jobs: Iterable[Mapping[str, Any]], *, callback_url: str | None = None,
                     metadata: Mapping[str, str] | None = None, all_or_nothing: bool = False) -> Batch:
        call = calls.batch_create(callback_url=callback_url, metadata=metadata, all_or_nothing=all_or_nothing)
        return Batch.from_json(await self._client._json(call, calls.ndjson(jobs)))

    async def get(self, batch_id: str) -> Batch:
        return Batch.from_json(await self._client._json(calls.batch(batch_id)))

    async def cancel(self, batch_id: str) -> Batch:
        return Batch.from_json(await self._client._json(calls.batch(batch_id, "/cancel")))

    async def results(self, batch_id: str) -> AsyncIterator[BatchResult]:
        call = calls.batch(batch_id, "/results")
        try:
            async with self._client._http.stream(call.method, call.path) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    calls.check(resp)
                async for line in resp.aiter_lines():
                    if line.strip():
                        yield BatchResult.from_json(json.loads(line))
        except httpx.TransportError as exc:
            raise TransportError(f"reading batch {batch_id} results: {exc}") from exc

    async def list(self, *, limit: int = 50) -> AsyncIterator[Batch]:
        cursor: str | None = None
        while True:
            data = await self._client._json(calls.list_batches(cursor, limit))
            for b in data.get("batches") or []:
                yield Batch.from_json(b)
            cursor = data.get("next_cursor")
            if cursor is None:
                return
