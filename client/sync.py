"""`Client`: the genqueue HTTP API from blocking Python code (httpx). Requests are built in `calls`."""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Unpack

import httpx

from genqueue import __version__
from genqueue.client import calls
from genqueue.client.errors import EventStreamError, TransportError, WaitTimeout
from genqueue.client.files import FileOutput
from genqueue.client.outcome import outputs_or_raise
from genqueue.client.sse import EventParser, job_event
from genqueue.client.types import Batch, BatchResult, Event, Job, JobPage

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
MAX_RESUMES = 3  # event stream reconnections in a row that bring no event before giving up


def default_headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "User-Agent": f"genqueue-client/{__version__}"}


class Client:
    """`Client("http://genqueue:8000", "gq_...")`. Every method raises an `APIError` subclass with the
    API's code and fields on a 4xx/5xx, `TransportError` when the API cannot be reached."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._http = httpx.Client(base_url=base_url, headers=default_headers(api_key), timeout=timeout,
                                  transport=transport)
        self.batches = Batches(self)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, call: calls.Call, content: Iterable[bytes] | None = None) -> httpx.Response:
        try:
            resp = self._http.request(call.method, call.path, params=call.params, headers=dict(call.headers),
                                      json=call.json, content=content, timeout=calls.timeout_for(call, self._timeout))
        except httpx.TransportError as exc:
            raise TransportError(f"{call.method} {call.path}: {exc}") from exc
        calls.check(resp)
        return resp

    def _json(self, call: calls.Call, content: Iterable[bytes] | None = None) -> Any:
        return self._send(call, content).json()

    # --- jobs -------------------------------------------------------------------------------------
    def submit(self, version_or_model: str | None = None, input: Mapping[str, Any] | None = None, *,
               wait: int | None = None, **options: Unpack[calls.SubmitOptions]) -> Job:
        """Create a job (202 once it is durable). `wait=N` (1-60) holds the answer until it is terminal
        or N s passed. Options: deployment, priority, metadata, deadline_seconds, callback_url,
        callback_events, idempotency_key."""
        return Job.from_json(self._json(calls.submit(version_or_model, input or {}, options, wait)))

    def get(self, job: Job | str) -> Job:
        return Job.from_json(self._json(calls.get(job)))

    def wait(self, job: Job | str, timeout: float | None = None) -> Job:
        """The job once terminal: one `Prefer: wait=60` read after another (each answers the moment the
        job ends), never a sleep. Raises WaitTimeout (with the last state) after `timeout` seconds."""
        if isinstance(job, Job) and job.terminal:
            return job
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0 and isinstance(job, Job):
                raise WaitTimeout(job, timeout or 0.0)
            job = Job.from_json(self._json(calls.get(job, calls.wait_step(remaining))))
            if job.terminal:
                return job

    def cancel(self, job: Job | str) -> Job:
        return Job.from_json(self._json(calls.cancel(job)))

    def download(self, job: Job | str, index: int = 0) -> FileOutput:
        """Output `index` of a job as a file-like object (`.read()`, iteration, `.save(path)`), its
        sha256 checked. A job id costs one read of the job first (for the sha256)."""
        found = job if isinstance(job, Job) else self.get(job)
        info = next((o for o in found.outputs if o.index == index), None)
        if info is None:
            raise IndexError(f"job {found.id} has no output {index} (status {found.status})")
        return FileOutput(self._http, found.id, info)

    def run(self, version_or_model: str | None = None, input: Mapping[str, Any] | None = None, *,
            timeout: float | None = None, **options: Unpack[calls.SubmitOptions]) -> builtins.list[FileOutput]:
        """Like `replicate.run`: submit, wait until terminal, return the outputs as file-like objects.
        Raises JobFailedError / JobCanceledError (with the job's error code and message) or WaitTimeout."""
        started = time.monotonic()
        job = self.submit(version_or_model, input, wait=calls.wait_step(timeout), **options)
        job = self.wait(job, None if timeout is None else timeout - (time.monotonic() - started))
        return [FileOutput(self._http, job.id, o) for o in outputs_or_raise(job)]

    def list_pages(self, *, status: str | None = None, model: str | None = None, priority: int | None = None,
                   metadata: Mapping[str, str] | None = None, limit: int = 50,
                   include_input: bool = False) -> Iterator[JobPage]:
        """Pages of jobs, newest first, each read when the previous one is used up (keyset cursors)."""
        cursor: str | None = None
        while True:
            page = JobPage.from_json(self._json(calls.list_jobs(
                cursor, status=status, model=model, priority=priority, metadata=metadata, limit=limit,
                include_input=include_input)))
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def list(self, *, status: str | None = None, model: str | None = None, priority: int | None = None,
             metadata: Mapping[str, str] | None = None, limit: int = 50, include_input: bool = False) -> Iterator[Job]:
        """Every matching job, newest first, walking the pages lazily (`limit` jobs per request)."""
        for page in self.list_pages(status=status, model=model, priority=priority, metadata=metadata,
                                    limit=limit, include_input=include_input):
            yield from page.jobs

    # --- events -----------------------------------------------------------------------------------
    def events(self, job: Job | str | None = None, *, status: Sequence[str] = (), batch: str | None = None,
               metadata: Mapping[str, str] | None = None, last_event_id: str | None = None) -> Iterator[Event]:
        """`job.updated` events: of one job (its state now, each change, ending once it is terminal) or,
        without `job`, of every job this key reads (filters: status, batch, metadata). A dropped
        connection is resumed from the last event id, so no event is lost or repeated."""
        last_id, last_job, empty = last_event_id, None, 0
        while True:
            call = calls.events(job, status=status, batch=batch, metadata=metadata, last_event_id=last_id)
            got = False
            try:
                with self._http.stream(call.method, call.path, params=call.params, headers=dict(call.headers),
                                       timeout=calls.timeout_for(call, self._timeout)) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        calls.check(resp)
                    parser = EventParser()
                    for line in resp.iter_lines():
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


class Batches:
    """`client.batches`: `POST /v1/batches` and friends."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, jobs: Iterable[Mapping[str, Any]], *, callback_url: str | None = None,
               metadata: Mapping[str, str] | None = None, all_or_nothing: bool = False) -> Batch:
        """Stream the jobs (job request dicts, as `POST /v1/jobs` takes) as NDJSON. Refused lines are in
        `batch.errors` (with `all_or_nothing`, any refusal raises ValidationError instead)."""
        call = calls.batch_create(callback_url=callback_url, metadata=metadata, all_or_nothing=all_or_nothing)
        return Batch.from_json(self._client._json(call, calls.ndjson(jobs)))

    def get(self, batch_id: str) -> Batch:
        return Batch.from_json(self._client._json(calls.batch(batch_id)))

    def cancel(self, batch_id: str) -> Batch:
        return Batch.from_json(self._client._json(calls.batch(batch_id, "/cancel")))

    def results(self, batch_id: str) -> Iterator[BatchResult]:
        """One result per input line, in input order, streamed as the API reads them."""
        call = calls.batch(batch_id, "/results")
        http = self._client._http
        try:
            with http.stream(call.method, call.path) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    calls.check(resp)
                for line in resp.iter_lines():
                    if line.strip():
                        yield BatchResult.from_json(json.loads(line))
        except httpx.TransportError as exc:
            raise TransportError(f"reading batch {batch_id} results: {exc}") from exc

    def list(self, *, limit: int = 50) -> Iterator[Batch]:
        cursor: str | None = None
        while True:
            data = self._client._json(calls.list_batches(cursor, limit))
            yield from (Batch.from_json(b) for b in data.get("batches") or [])
            cursor = data.get("next_cursor")
            if cursor is None:
                return
