"""`Prefer: wait=N` (RFC 7240, as Replicate uses it): how long a read or a create may hold its answer."""

from __future__ import annotations

from genqueue.api.errors import ApiError
from genqueue.intake.errors import FieldError

MAX_WAIT = 60  # seconds; a bare `wait` means this


def _bad(reason: str) -> ApiError:
    return ApiError(422, "validation_error", "request validation failed", [FieldError("header.Prefer", reason)])


def parse_wait(header: str | None) -> int | None:
    """Seconds to wait, or None when the header asks for no wait. Other preferences are ignored (the RFC
    says so); a `wait` that is not a whole number from 1 to 60 is a 422 naming the header."""
    if not header:
        return None
    found: int | None = None
    for pref in header.split(","):
        token = pref.split(";", 1)[0].strip()  # parameters after `;` are not ours to read
        name, eq, value = token.partition("=")
        if name.strip().lower() != "wait":
            continue
        value = value.strip().strip('"')
        if not eq:
            found = MAX_WAIT
            continue
        if not value.isdigit() or not 1 <= int(value) <= MAX_WAIT:
            raise _bad(f"wait must be a whole number of seconds from 1 to {MAX_WAIT}")
        found = int(value)
    return found
