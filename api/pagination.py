"""Opaque keyset cursors for listing jobs newest first: base64url of "<created_at iso>|<id>"."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime

from genqueue.api.errors import ApiError
from genqueue.intake.errors import FieldError

_ID = re.compile(r"^[0-9a-f]{32}$")


def encode_cursor(created_at: datetime, job_id: str) -> str:
    raw = f"{created_at.isoformat()}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, job_id = raw.split("|")
        created_at = datetime.fromisoformat(stamp)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _bad() from None
    if created_at.tzinfo is None or not _ID.match(job_id):
        raise _bad()
    return created_at, job_id


def _bad() -> ApiError:
    return ApiError(422, "validation_error", "invalid cursor",
                    [FieldError("cursor", "is not a cursor returned by this API")])
