"""Verifying Replicate's webhook deliveries (Standard Webhooks signing) and finding the signing key.

A webhook request carries no API key: the signature is its only credential, so it is checked before
the body is even parsed. Signed content is "{webhook-id}.{webhook-timestamp}.{raw body}", HMAC-SHA256
with the base64-decoded part of the secret after `whsec_`; the header may list several `v1,<sig>`
entries (during a key rotation) and any one matching is enough.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Mapping

import httpx

from genqueue.core.settings import Settings

# Replicate's guidance: reject timestamps more than five minutes away (replay window).
TOLERANCE_SECONDS = 300
# After a signature fails with a key fetched from Replicate, fetch again at most this often (rotation).
REFETCH_SECONDS = 60.0


class WebhookRejected(Exception):
    """The delivery is not provably from Replicate; the message says why (no secret in it)."""


def signing_key(secret: str) -> bytes:
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected("the configured webhook secret is not a whsec_<base64> value") from None


def sign(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    content = webhook_id.encode() + b"." + timestamp.encode() + b"." + body
    return base64.b64encode(hmac.new(signing_key(secret), content, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> None:
    webhook_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not webhook_id or not timestamp or not signatures:
        raise WebhookRejected("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        sent = int(timestamp)
    except ValueError:
        raise WebhookRejected("webhook-timestamp is not unix seconds") from None
    if abs((time.time() if now is None else now) - sent) > TOLERANCE_SECONDS:
        raise WebhookRejected("webhook-timestamp is more than 5 minutes away from now")
    expected = sign(secret, webhook_id, timestamp, body)
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            return
    raise WebhookRejected("signature does not match")


class WebhookSecret:
    """The signing secret: from GENQUEUE_WEBHOOK_SECRET, else fetched once from Replicate and cached.

    `fetch` is injectable for tests; by default it calls GET /v1/webhooks/default/secret with the
    Replicate token (the only place the API process uses that token)."""

    def __init__(self, settings: Settings, fetch: Callable[[], str] | None = None) -> None:
        configured = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
        self._fixed = configured or None
        self._fetch = fetch or (lambda: _fetch_default_secret(settings))
        self._cached: str | None = None
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    def get(self) -> str:
        if self._fixed:
            return self._fixed
        with self._lock:
            if self._cached is None:
                self._cached, self._fetched_at = self._fetch(), time.monotonic()
            return self._cached

    def refresh_after_mismatch(self) -> bool:
        """Re-fetch a fetched secret (Replicate may have rotated it); True if it changed."""
        if self._fixed:
            return False
        with self._lock:
            if time.monotonic() - self._fetched_at < REFETCH_SECONDS:
                return False
            old, self._cached, self._fetched_at = self._cached, self._fetch(), time.monotonic()
            return self._cached != old


def _fetch_default_secret(settings: Settings) -> str:
    url = f"{settings.replicate_base_url}/webhooks/default/secret"
    response = httpx.get(url, headers={"Authorization": f"Bearer {settings.token()}"},
                         timeout=settings.replicate_timeout)
    response.raise_for_status()
    key = response.json().get("key")
    if not isinstance(key, str) or not key.startswith("whsec_"):
        raise WebhookRejected("Replicate returned no whsec_ webhook secret")
    return key
