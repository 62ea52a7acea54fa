"""Server-Sent Events parsing (the WHATWG rules the API's streams need): lines in, events out.
Pure, so the sync and async clients feed it lines from their own streams."""

from __future__ import annotations

import json
from dataclasses import dataclass

from genqueue.client.types import Event, Job


@dataclass(frozen=True)
class RawEvent:
    id: str | None
    event: str
    data: str


class EventParser:
    """Feed it the lines of a `text/event-stream` body (without their line ends); it returns an event
    at each blank line that ends one. Comments (`: keepalive`) and `retry:` are skipped."""

    def __init__(self) -> None:
        self._id: str | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> RawEvent | None:
        if line == "":
            if not self._data:
                self._event = ""
                return None
            raw = RawEvent(self._id, self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return raw  # the id persists, as the spec says: it is the resume point
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None


def job_event(raw: RawEvent) -> Event | None:
    """A `job.updated` event as an `Event`; None for another kind (a newer server's)."""
    if raw.event != "job.updated":
        return None
    return Event(raw.id, raw.event, Job.from_json(json.loads(raw.data)))
