"""Turning Replicate HTTP answers (or their absence) into JSON data or typed errors.

Only the status code and the problem+json ``title``/``detail`` ever reach an error message; request
bodies never do.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from genqueue.worker.replicate.errors import PermanentError, ReplicateError, TransientError, clip


def describe(status_code: int | None, title: str | None, detail: str | None, fallback: str) -> str:
    """``HTTP <status> <title>: <detail>`` from the safe parts of a problem+json body."""
    text = ": ".join(p for p in (clip(title), clip(detail)) if p) or fallback
    return text if status_code is None else f"HTTP {status_code} {text}"


_SECONDS_IN_TEXT = re.compile(r"(\d+(?:\.\d+)?)\s*(?:seconds?|secs?|s)\b", re.IGNORECASE)
_ANY_NUMBER = re.compile(r"(\d+(?:\.\d+)?)")


def _non_negative(value: float) -> float | None:
    return value if value >= 0 and value == value and value != float("inf") else None


def parse_retry_after(
    header: str | None, body: dict[str, Any] | None, *, now: datetime | None = None
) -> float | None:
    """Seconds to wait after a 429: ``Retry-After`` header (seconds or HTTP date), then the body's
    ``retry_after``, then a number found in ``detail``. None when nothing usable is present."""
    if header:
        header = header.strip()
        try:
            found = _non_negative(float(header))
            if found is not None:
                return found
        except ValueError:
            try:
                when = parsedate_to_datetime(header)
            except (TypeError, ValueError, IndexError):
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    if body:
        raw = body.get("retry_after")
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            found = _non_negative(float(raw))
            if found is not None:
                return found
        elif isinstance(raw, str):
            try:
                found = _non_negative(float(raw))
            except ValueError:
                found = None
            if found is not None:
                return found
        detail = body.get("detail")
        if isinstance(detail, str):
            match = _SECONDS_IN_TEXT.search(detail) or _ANY_NUMBER.search(detail)
            if match:
                return float(match.group(1))
    return None


def transport_error(endpoint: str, exc: httpx.TransportError) -> ReplicateError:
    never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    kind = type(exc).__name__
    return TransientError(
        f"{endpoint}: {kind} talking to Replicate"
        + ("" if never_sent else " (the request may have reached the server)"),
        request_sent_maybe=not never_sent,
    )


# Prediction JSON is small, except that Replicate may return file outputs inline as ``data:`` URIs
# (sync mode, ``Prefer: wait``): base64 makes an output 4/3 its size, so the cap lets through one
# output at the default OUTPUT_MAX_BYTES (50 MiB -> 66.7 MiB) with room for the rest of the body, and
# bounds what a broken or hostile answer can make each worker thread hold.
MAX_BODY_BYTES = 72 * 1024 * 1024
_IDENTITY = {"", "identity"}


class BodyTooLarge(Exception):
    """The answer was not read: its body is content-encoded or over the cap."""


def read_capped(response: httpx.Response, max_bytes: int) -> None:
    """Read a streamed ``response`` into ``response.content``, refusing more than ``max_bytes``.

    The client asks for ``Accept-Encoding: identity``, and an encoded answer is refused without being
    decoded: httpx inflates each received chunk whole, so a few hundred bytes of stacked gzip would
    become gigabytes before any count of decoded bytes could stop them."""
    try:
        encodings = response.headers.get_list("content-encoding", split_commas=True)
        if any(e.strip().lower() not in _IDENTITY for e in encodings):
            raise BodyTooLarge("content-encoded body")
        length = response.headers.get("content-length", "")
        if length.strip().isdigit() and int(length) > max_bytes:
            raise BodyTooLarge(f"body over {max_bytes} bytes")
        parts: list[bytes] = []
        total = 0
        for chunk in response.iter_bytes():
            total += len(chunk)
            if total > max_bytes:
                raise BodyTooLarge(f"body over {max_bytes} bytes")
            parts.append(chunk)
        response._content = b"".join(parts)  # what Response.read() sets; json() and text read it
    finally:
        response.close()


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def decode(endpoint: str, response: httpx.Response) -> Any:
    status = response.status_code
    if 200 <= status < 300:
        data = _json_or_none(response)
        if not isinstance(data, dict):
            raise PermanentError(
                f"{endpoint}: malformed response (HTTP {status}, not a JSON object)", status_code=status
            )
        return data
    body = _json_or_none(response)
    problem: dict[str, Any] = body if isinstance(body, dict) else {}
    title = problem.get("title") if isinstance(problem.get("title"), str) else None
    detail = problem.get("detail") if isinstance(problem.get("detail"), str) else None
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"), problem)
        message = f"{endpoint}: " + describe(status, title, detail, "rate limited")
        raise TransientError(
            message,
            status_code=status,
            title=title,
            detail=detail,
            retry_after=retry_after,
            request_sent_maybe=False,
        )
    if status >= 500:
        message = f"{endpoint}: " + describe(status, title, detail, "server error")
        raise TransientError(message, status_code=status, title=title, detail=detail)
    fields = problem.get("invalid_fields")
    invalid = [f for f in fields if isinstance(f, dict)] if isinstance(fields, list) else None
    fallback = "unexpected redirect" if 300 <= status < 400 else "request refused"
    message = f"{endpoint}: " + describe(status, title, detail, fallback)
    raise PermanentError(message, status_code=status, title=title, detail=detail, invalid_fields=invalid)
