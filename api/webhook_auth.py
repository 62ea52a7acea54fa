"""Verifying Replicate's webhook deliveries (Standard Webhooks signing) and finding the signing key.

A webhook request carries no API key: the signature is its only credential, so it is checked before
the body is even parsed. The check itself is the `standardwebhooks` package (the specification's
reference library): signed content "{webhook-id}.{webhook-timestamp}.{raw body}", HMAC-SHA256 with
the base64 part of the `whsec_` secret, any one of several `v1,<sig>` entries (a key rotation), and
the five-minute replay window Replicate asks for. Only the secret's fetching is ours.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

import httpx
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from genqueue.core.settings import Settings

# After a signature fails with a key fetched from Replicate, fetch again at most this often (rotation).
REFETCH_SECONDS = 60.0
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class WebhookRejected(Exception):
    """The delivery is not provably from Replicate; the message says why (no secret in it)."""


def check_headers(headers: Mapping[str, str]) -> None:
    """The cheap part, before any secret is looked at (or fetched): all three headers, a numeric stamp."""
    if not all(headers.get(h) for h in HEADERS):
        raise WebhookRejected("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        float(headers["webhook-timestamp"])
    except ValueError:
        raise WebhookRejected("webhook-timestamp is not unix seconds") from None


def verify(secret: str, headers: Mapping[str, str], body: bytes) -> None:
    check_headers(headers)
    try:
        webhook = Webhook(secret)
    except Exception:  # a malformed whsec_ value: binascii.Error, EmptyWebhookSecretError
        raise WebhookRejected("the webhook secret is not a whsec_<base64> value") from None
    try:
        webhook.verify(body, {h: headers[h] for h in HEADERS}, json_parse=False)
    except WebhookVerificationError as exc:
        raise WebhookRejected(f"signature check failed ({exc})") from None


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
                         timeout=30.0)
    response.raise_for_status()
    key = response.json().get("key")
    if not isinstance(key, str) or not key.startswith("whsec_"):
        raise WebhookRejected("Replicate returned no whsec_ webhook secret")
    return key
