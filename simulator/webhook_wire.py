"""The wire side of webhooks (reference §9): checking ``webhook`` / ``webhook_events_filter`` in a
create body, and Standard Webhooks signing. Pure functions; the sending lives in ``webhooks.py``."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from standardwebhooks import Webhook

from genqueue.simulator.schema import InvalidField, _type_name

EVENTS = ("start", "output", "logs", "completed")
MAX_URL_LENGTH = 2048
SECRET_PREFIX = "whsec_"


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    url: str
    events: frozenset[str]


def _url_error(value: Any) -> InvalidField | None:
    if not isinstance(value, str):
        return InvalidField("invalid_type", "webhook",
                            f"Invalid type. Expected: string, given: {_type_name(value)}")
    bad_format = InvalidField("format", "webhook", "Does not match format 'uri'")
    if not value or len(value) > MAX_URL_LENGTH or any(c.isspace() for c in value):
        return bad_format
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        return bad_format
    if not parts.hostname:
        return bad_format
    # Replicate wants HTTPS; plain http is accepted too so loopback receivers work in tests.
    if parts.scheme.lower() not in ("https", "http"):
        return InvalidField("format", "webhook", "Webhook URL must use https (the simulator also accepts http)")
    return None


def _filter_errors(value: Any) -> list[InvalidField]:
    where = "webhook_events_filter"
    if not isinstance(value, list):
        return [InvalidField("invalid_type", where, f"Invalid type. Expected: array, given: {_type_name(value)}")]
    allowed = ", ".join(f'"{e}"' for e in EVENTS)
    return [
        InvalidField("enum", f"{where}.{i}", f"{where}.{i} must be one of the following: {allowed}")
        for i, event in enumerate(value)
        if event not in EVENTS
    ]


def parse_webhook(body: dict[str, Any]) -> tuple[WebhookRequest | None, list[InvalidField]]:
    """The webhook a create body asks for (None without one) and its validation errors.

    An absent, null or empty filter means every event, as on Replicate."""
    errors: list[InvalidField] = []
    url, events = body.get("webhook"), body.get("webhook_events_filter")
    if url is not None and (error := _url_error(url)) is not None:
        errors.append(error)
    if events is not None:
        errors.extend(_filter_errors(events))
    if errors or url is None:
        return None, errors
    chosen = frozenset(events) if events else frozenset(EVENTS)
    return WebhookRequest(url, chosen), []


def secret_key(secret: str) -> bytes:
    """HMAC key of a ``whsec_<base64>`` secret; ValueError when it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"webhook_secret must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except binascii.Error as exc:
        raise ValueError("webhook_secret must be whsec_ followed by base64") from exc
    if not key:
        raise ValueError("webhook_secret holds an empty key")
    return key


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, by the spec's reference library."""
    return Webhook(key).sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body)


def signed_headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": "replicate-simulator-webhooks/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, msg_id, timestamp, body),
    }
