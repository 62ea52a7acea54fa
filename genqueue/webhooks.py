"""Checking a genqueue callback (or any Standard Webhooks delivery) in the receiving service:

    from genqueue.webhooks import verify, WebhookError
    job = verify(request.headers, await request.body(), secret)   # the key's whsec_... secret

The signature is computed by the `standardwebhooks` package (the specification's reference library);
this adds a tolerance the caller can set (the reference's is a fixed 5 minutes, kept as the default)
and one exception class per reason, so a receiver can log why a delivery was refused. Imports
nothing of the server: it runs wherever the client does.
"""

from __future__ import annotations

import binascii
import hmac
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError

TOLERANCE_SECONDS = 300  # Standard Webhooks' (and Replicate's) replay window
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class WebhookError(Exception):
    """The delivery is not provably from genqueue; do not act on it (answer 4xx)."""


class MissingHeaders(WebhookError):
    """One of webhook-id, webhook-timestamp, webhook-signature is absent or empty."""


class BadTimestamp(WebhookError):
    """webhook-timestamp is not unix seconds."""


class TimestampOutOfTolerance(WebhookError):
    """Signed too long ago (a replay) or too far in the future (a wrong clock)."""


class BadSignature(WebhookError):
    """No `v1,<signature>` entry matches the body under this secret."""


class BadSecret(ValueError):
    """The secret is not a `whsec_<base64>` value (a configuration error, not a bad delivery)."""


def verify(headers: Mapping[str, str], body: bytes | str, secret: str, *, tolerance: float = TOLERANCE_SECONDS,
           now: float | None = None) -> Any:
    """Check a delivery and return its parsed JSON body. `headers`: any mapping (case-insensitive names:
    a framework's headers object or a dict); `body`: the raw bytes exactly as received; `now`: unix
    seconds (tests). Raises a `WebhookError` subclass naming the reason, `BadSecret` for a bad secret.
    De-duplicate on `headers["webhook-id"]`: a retried delivery carries the same id."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = (lowered.get(h) for h in HEADERS)
    if not (msg_id and stamp and signatures):
        raise MissingHeaders("missing " + ", ".join(h for h in HEADERS if not lowered.get(h)))
    try:
        sent = int(stamp)
    except ValueError:
        raise BadTimestamp("webhook-timestamp is not whole unix seconds") from None
    skew = (time.time() if now is None else now) - sent
    if skew > tolerance:
        raise TimestampOutOfTolerance(f"signed {skew:.0f} s ago, more than the {tolerance:g} s allowed")
    if -skew > tolerance:
        raise TimestampOutOfTolerance(f"signed {-skew:.0f} s in the future, more than the {tolerance:g} s allowed")
    try:
        webhook = Webhook(secret)
    except (binascii.Error, ValueError, EmptyWebhookSecretError):
        raise BadSecret("the secret must be whsec_ followed by base64") from None
    payload = body.encode() if isinstance(body, str) else bytes(body)
    expected = webhook.sign(msg_id, datetime.fromtimestamp(sent, UTC), payload).encode()
    if not any(hmac.compare_digest(expected, entry.encode()) for entry in signatures.split()):
        raise BadSignature("no signature matches the body under this secret")
    try:
        return json.loads(payload)
    except ValueError:
        raise WebhookError("the signed body is not JSON") from None
