"""Job status events: one Redis stream that every writer appends to and every API process reads.

Why a stream (XADD) and not pub/sub: a stream entry's id is monotonic and stays readable for a while,
so it is at once the SSE `id:` and the resume point (`Last-Event-ID` = read the stream after it), and
an API process whose connection to Redis broke reads on from the last id it saw instead of losing what
was published meanwhile. The stream is capped (MAXLEN ~, about MAX_EVENTS entries) so it never grows.

An entry carries the job id and the status it was written with: never the input, the key or an error
message. Listeners read the job from SQL (the source of truth) when they need its JSON.

Publishing happens after the status change committed (a listener that reads SQL then sees it) and
never raises: Redis being away must not fail a step; the API's periodic re-check of waited jobs and the
SSE resume cover a lost event.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

STREAM = "genqueue:events"
MAX_EVENTS = 100_000  # ~ a few hours of a busy fleet: how far back Last-Event-ID can resume
_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")


@dataclass(frozen=True)
class JobEvent:
    id: str  # the stream entry id, "<ms>-<seq>"
    job_id: str
    status: str


def publish(client: redis.Redis, job_id: str, status: str) -> None:
    """Append one event; logs (never raises) when Redis cannot take it."""
    publish_many(client, [(job_id, status)])


def publish_many(client: redis.Redis, events: Iterable[tuple[str, str]]) -> None:
    """Append events in one round trip (a batch create); never raises."""
    items = list(events)
    if not items:
        return
    try:
        pipe = client.pipeline(transaction=False)
        for job_id, status in items:
            pipe.xadd(STREAM, {"job": job_id, "status": status}, maxlen=MAX_EVENTS, approximate=True)
        pipe.execute()
    except Exception as exc:  # any failure: the step that wrote the status has succeeded regardless
        log.warning("job event not published job=%s (%s)", items[0][0], type(exc).__name__)


def parse_id(value: str) -> tuple[int, int] | None:
    """A stream id as a comparable pair, or None when it is not one."""
    m = _ID.match(value)
    return (int(m.group(1)), int(m.group(2))) if m else None


def is_after(a: str, b: str) -> bool:
    """Whether stream id `a` comes after `b` (both valid ids)."""
    pa, pb = parse_id(a), parse_id(b)
    return pa is not None and pb is not None and pa > pb


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode(entry_id: Any, fields: Mapping[Any, Any]) -> JobEvent | None:
    """One stream entry as an event; None for an entry that is not one of ours."""
    job = fields.get(b"job", fields.get("job"))
    status = fields.get(b"status", fields.get("status"))
    if job is None or status is None:
        return None
    return JobEvent(_text(entry_id), _text(job), _text(status))
