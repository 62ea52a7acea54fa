"""A minimal Server-Sent Events reader over httpx for the tests: frames as dicts, in order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Frame:
    id: str | None
    event: str | None
    data: str

    @property
    def job(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.data)
        return value


def frames(resp: httpx.Response) -> Iterator[Frame]:
    """Every event of an open `text/event-stream` response (comments and `retry:` are skipped)."""
    fields: dict[str, str] = {}
    data: list[str] = []
    for line in resp.iter_lines():
        if line == "":
            if data:
                yield Frame(fields.get("id"), fields.get("event"), "\n".join(data))
            fields, data = {}, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        else:
            fields[name] = value
