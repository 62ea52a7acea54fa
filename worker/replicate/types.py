"""Prediction objects as genqueue keeps them, and a lenient parser for Replicate's JSON.

The raw ``input`` echoed by Replicate is never kept (it contains user secrets such as ``api_key``);
only its digest is, so that a lost create can be matched against the input we sent.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from genqueue.models.status import PREDICTION_STATUSES, PREDICTION_TERMINAL
from genqueue.worker.replicate.errors import PermanentError

# Replicate's statuses are defined once, with the job status machine that maps them.
TERMINAL_STATUSES: frozenset[str] = PREDICTION_TERMINAL
KNOWN_STATUSES: frozenset[str] = frozenset(PREDICTION_STATUSES)


def input_digest(input: Any) -> str:
    """sha256 hex of the canonical JSON of a prediction input (sorted keys, compact, UTF-8)."""
    canonical = json.dumps(input, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """The budget headers of one answer, as sent (``ratelimit-remaining``, ``ratelimit-reset``; None
    when absent). `endpoint` is the client's name for the call: create, get, cancel or list."""

    endpoint: str
    status: int
    remaining: str | None
    reset: str | None


@dataclass(frozen=True, slots=True)
class Prediction:
    id: str
    status: str
    model: str | None
    version: str | None
    output: Any
    error: str | None
    data_removed: bool
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    urls_get: str | None
    urls_cancel: str | None
    predict_time: float | None
    total_time: float | None
    input_digest: str | None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class Page:
    results: list[Prediction]
    next: str | None


# Fractional seconds longer than 6 digits (Replicate sends up to 9) are cut to microseconds.
_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_timestamp(value: Any) -> datetime | None:
    """RFC 3339 with ``Z`` and 0-9 fractional digits -> aware UTC datetime; anything else -> None."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _opt_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def parse_prediction(obj: Any) -> Prediction:
    """Build a Prediction from a response object, ignoring unknown keys and tolerating absent
    ``metrics``/``urls``/``output``/``data_removed``/``started_at`` and ``logs: null``.
    Raises PermanentError("malformed response") if ``id`` or ``status`` is missing."""
    if not isinstance(obj, dict):
        raise PermanentError("malformed response: prediction is not an object")
    pid = obj.get("id")
    status = obj.get("status")
    if not isinstance(pid, str) or not pid or not isinstance(status, str) or not status:
        raise PermanentError("malformed response: prediction without id or status")
    urls = obj.get("urls")
    if not isinstance(urls, dict):
        urls = {}
    metrics = obj.get("metrics")
    if not isinstance(metrics, dict):
        metrics = {}
    raw_error = obj.get("error")
    error = raw_error if raw_error is None or isinstance(raw_error, str) else json.dumps(raw_error)
    digest = input_digest(obj["input"]) if obj.get("input") is not None else None
    return Prediction(
        id=pid,
        status=status,
        model=_opt_str(obj.get("model")),
        version=_opt_str(obj.get("version")),
        output=obj.get("output"),
        error=error,
        data_removed=obj.get("data_removed") is True,
        created_at=parse_timestamp(obj.get("created_at")),
        started_at=parse_timestamp(obj.get("started_at")),
        completed_at=parse_timestamp(obj.get("completed_at")),
        urls_get=_opt_str(urls.get("get")),
        urls_cancel=_opt_str(urls.get("cancel")),
        predict_time=_opt_float(metrics.get("predict_time")),
        total_time=_opt_float(metrics.get("total_time")),
        input_digest=digest,
    )


def parse_page(obj: Any) -> Page:
    """Parse a ``GET /predictions`` list page: ``{"results": [...], "next": URL|null}``."""
    if not isinstance(obj, dict) or not isinstance(obj.get("results"), list):
        raise PermanentError("malformed response: list page without results")
    return Page(results=[parse_prediction(item) for item in obj["results"]], next=_opt_str(obj.get("next")))
