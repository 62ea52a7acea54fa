"""The requests both clients send and how an answer is read: pure values and functions, no I/O.
`Client` and `AsyncClient` differ only in how they send a `Call`, so every rule (paths, headers,
query parameters, the wait loop's step, error mapping) lives here once."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict
from urllib.parse import quote

import httpx

from genqueue.client.errors import api_error
from genqueue.client.types import Job

MAX_WAIT = 60  # the API holds a `Prefer: wait` answer at most this long
WAIT_MARGIN = 30.0  # a held answer's read timeout: the wait plus this
STREAM_READ_TIMEOUT = 60.0  # event streams send a keepalive every 15 s
NDJSON_CHUNK_LINES = 500  # lines per body chunk when streaming a batch

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class SubmitOptions(TypedDict, total=False):
    """Everything `POST /v1/jobs` accepts besides the target and the input."""

    deployment: str
    priority: int
    metadata: Mapping[str, str]
    deadline_seconds: float
    callback_url: str
    callback_events: Sequence[Literal["running", "terminal"]]
    idempotency_key: str


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    read_timeout: float | None = None  # None: the client's default


def _seg(value: str) -> str:
    """A path segment from a caller's value: quoted, so an id can never walk to another route."""
    return quote(value, safe="")


def job_id(job: Job | str) -> str:
    return job.id if isinstance(job, Job) else job


def target(ref: str | None, deployment: str | None) -> dict[str, str]:
    """`replicate.run`'s first argument as the job body's target: "owner/name:<hex>" or "<hex>" is a
    version, "owner/name" a model; `deployment=` names a deployment instead."""
    if deployment is not None:
        if ref is not None:
            raise ValueError("give either a version/model or deployment=, not both")
        return {"deployment": deployment}
    if not ref:
        raise ValueError("a version (owner/name:<hex>), a model (owner/name) or deployment= is required")
    return {"version": ref} if ":" in ref or _HEX64.match(ref) else {"model": ref}


def job_body(ref: str | None, input: Mapping[str, Any], options: SubmitOptions) -> dict[str, Any]:
    body: dict[str, Any] = {**target(ref, options.get("deployment")), "input": dict(input)}
    for name in ("priority", "deadline_seconds", "callback_url"):
        if name in options:
            body[name] = options[name]
    if "metadata" in options:
        body["metadata"] = dict(options["metadata"])
    if "callback_events" in options:
        body["callback_events"] = list(options["callback_events"])
    return body


def _prefer(wait: int | None) -> dict[str, str]:
    return {"Prefer": f"wait={wait}"} if wait is not None else {}


def _held(wait: int | None) -> float | None:
    return wait + WAIT_MARGIN if wait is not None else None


def submit(ref: str | None, input: Mapping[str, Any], options: SubmitOptions, wait: int | None = None) -> Call:
    headers = _prefer(wait)
    if "idempotency_key" in options:
        headers["Idempotency-Key"] = options["idempotency_key"]
    return Call("POST", "/v1/jobs", headers=headers, json=job_body(ref, input, options), read_timeout=_held(wait))


def get(job: Job | str, wait: int | None = None) -> Call:
    return Call("GET", f"/v1/jobs/{_seg(job_id(job))}", headers=_prefer(wait), read_timeout=_held(wait))


def cancel(job: Job | str) -> Call:
    return Call("POST", f"/v1/jobs/{_seg(job_id(job))}/cancel")


def output(job: Job | str, index: int) -> Call:
    return Call("GET", f"/v1/jobs/{_seg(job_id(job))}/outputs/{int(index)}")


def _metadata(metadata: Mapping[str, str] | None) -> list[tuple[str, str]]:
    return [(f"metadata.{k}", str(v)) for k, v in (metadata or {}).items()]


def list_jobs(cursor: str | None, *, status: str | None, model: str | None, priority: int | None,
              metadata: Mapping[str, str] | None, limit: int, include_input: bool) -> Call:
    params: list[tuple[str, str]] = [("limit", str(limit))]
    for name, value in (("status", status), ("model", model), ("priority", priority), ("cursor", cursor)):
        if value is not None:
            params.append((name, str(value)))
    if include_input:
        params.append(("include", "input"))
    return Call("GET", "/v1/jobs", params=tuple(params + _metadata(metadata)))


def events(job: Job | str | None, *, status: Sequence[str], batch: str | None,
           metadata: Mapping[str, str] | None, last_event_id: str | None) -> Call:
    headers = {"Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    if job is not None:
        return Call("GET", f"/v1/jobs/{_seg(job_id(job))}/events", headers=headers, read_timeout=STREAM_READ_TIMEOUT)
    params = [("status", s) for s in status] + ([("batch", batch)] if batch else []) + _metadata(metadata)
    return Call("GET", "/v1/events", params=tuple(params), headers=headers, read_timeout=STREAM_READ_TIMEOUT)


def resume_events(one_job: bool, last: Job | None) -> bool:
    """After a stream ended: a job's stream is over once its job is terminal; the all-jobs stream only
    ends when the server had to drop it (Redis away), so it is resumed from the last id."""
    return not (one_job and last is not None and last.terminal)


def batch_create(*, callback_url: str | None, metadata: Mapping[str, str] | None, all_or_nothing: bool) -> Call:
    params: list[tuple[str, str]] = [("all_or_nothing", "true")] if all_or_nothing else []
    if callback_url is not None:
        params.append(("callback_url", callback_url))
    return Call("POST", "/v1/batches", params=tuple(params + _metadata(metadata)),
                headers={"Content-Type": "application/x-ndjson"})


def ndjson(jobs: Iterable[Mapping[str, Any]]) -> Iterator[bytes]:
    """The batch body, encoded lazily a few hundred lines at a time: a generator of 50,000 jobs is sent
    without being held in memory."""
    lines: list[str] = []
    for job in jobs:
        lines.append(json.dumps(job, separators=(",", ":"), ensure_ascii=False))
        if len(lines) >= NDJSON_CHUNK_LINES:
            yield ("\n".join(lines) + "\n").encode()
            lines = []
    if lines:
        yield ("\n".join(lines) + "\n").encode()


def batch(batch_id: str, action: Literal["", "/results", "/cancel"] = "") -> Call:
    return Call("POST" if action == "/cancel" else "GET", f"/v1/batches/{_seg(batch_id)}{action}")


def list_batches(cursor: str | None, limit: int) -> Call:
    params = [("limit", str(limit))] + ([("cursor", cursor)] if cursor else [])
    return Call("GET", "/v1/batches", params=tuple(params))


def wait_step(remaining: float | None) -> int:
    """The `Prefer: wait` of the next read: the most the API allows, or what is left of the caller's
    timeout (whole seconds, at least 1)."""
    if remaining is None:
        return MAX_WAIT
    return max(1, min(MAX_WAIT, math.ceil(remaining)))


def timeout_for(call: Call, default: httpx.Timeout) -> httpx.Timeout:
    if call.read_timeout is None or default.read is None:  # read=None: the caller wants no read timeout
        return default
    return httpx.Timeout(default.connect, read=max(call.read_timeout, default.read or 0.0), write=default.write,
                         pool=default.pool)


def check(response: httpx.Response) -> None:
    """Raise the `APIError` of a 4xx/5xx answer (its body must have been read)."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    raise api_error(response.status_code, body, response.headers)
