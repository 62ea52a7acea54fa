"""The API's JSON as typed, read-only values. Parsing is lenient: unknown keys are ignored (kept in
`raw`), so a newer server does not break an older client."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TERMINAL = frozenset({"succeeded", "failed", "canceled"})


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


@dataclass(frozen=True)
class OutputInfo:
    """A stored output as the job JSON lists it (download it with `Client.download`)."""

    index: int
    url: str
    sha256: str | None
    size: int | None
    content_type: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OutputInfo:
        return cls(index=int(data["index"]), url=str(data.get("url") or ""), sha256=data.get("sha256"),
                   size=data.get("size"), content_type=data.get("content_type"))


@dataclass(frozen=True)
class JobErrorInfo:
    code: str
    message: str | None


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    model: str | None
    version: str | None
    input: dict[str, Any] | None  # secret fields read "***"
    outputs: tuple[OutputInfo, ...]
    error: JobErrorInfo | None
    metadata: dict[str, str]
    batch_id: str | None
    priority: int
    created_at: datetime | None
    finished_at: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)  # the whole JSON (metrics, estimates, ...)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        err = data.get("error")
        return cls(
            id=str(data["id"]), status=str(data["status"]), model=data.get("model"), version=data.get("version"),
            input=data.get("input"),
            outputs=tuple(OutputInfo.from_json(o) for o in data.get("outputs") or []),
            error=JobErrorInfo(str(err.get("code")), err.get("message")) if isinstance(err, dict) else None,
            metadata=dict(data.get("metadata") or {}), batch_id=data.get("batch_id"),
            priority=int(data.get("priority", 5)), created_at=_time(data.get("created_at")),
            finished_at=_time(data.get("finished_at")), raw=data,
        )


@dataclass(frozen=True)
class JobPage:
    jobs: tuple[Job, ...]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobPage:
        return cls(tuple(Job.from_json(j) for j in data.get("jobs") or []), data.get("next_cursor"))


@dataclass(frozen=True)
class LineError:
    line: int
    field: str
    reason: str


@dataclass(frozen=True)
class Batch:
    id: str
    status: str  # accepting | processing | completed | canceled
    counts: dict[str, int]
    progress: float
    eta_seconds: float | None
    errors: tuple[LineError, ...]  # only in the answer to create: the refused lines
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.status in ("completed", "canceled")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Batch:
        return cls(
            id=str(data["id"]), status=str(data["status"]), counts=dict(data.get("counts") or {}),
            progress=float(data.get("progress") or 0.0), eta_seconds=data.get("eta_seconds"),
            errors=tuple(LineError(int(e["line"]), str(e["field"]), str(e["reason"]))
                         for e in data.get("errors") or []),
            raw=data,
        )


@dataclass(frozen=True)
class BatchResult:
    """One line of a batch's results: an accepted job as it is now, or a refused line (`rejected`)."""

    line: int
    id: str | None
    status: str
    outputs: tuple[OutputInfo, ...]
    error: dict[str, Any] | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BatchResult:
        return cls(line=int(data["line"]), id=data.get("id"), status=str(data["status"]),
                   outputs=tuple(OutputInfo.from_json(o) for o in data.get("outputs") or []),
                   error=data.get("error"), raw=data)


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event: `id` (pass as `last_event_id` to resume), `event` (`job.updated`), the job."""

    id: str | None
    event: str
    job: Job
