"""Verifying Replicate's webhook deliveries (Standard Webhooks signing) and finding the signing key.

A webhook request carries no API key: the signature is its only credential, so it is checked before
the body is even parsed. The check itself is the `standardwebhooks` package (the specification's
reference library): signed content "{webhook-id}.{webhook-timestamp}.{raw body}", HMAC-SHA256 with
the base64 part of the `whsec_` secret, any one of several `v1,<sig>` entries (a key rotation), and
the five-minute replay window Replicate asks for. Only the secret's fetching is ours.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

import httpx
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from genqueue.core.settings import Settings

log = logging.getLogger(__name__)

# After a signature fails with a key fetched from Replicate, fetch again at most this often (rotation).
REFETCH_SECONDS = 60.0
# After a failed fetch, deliveries get 503 without a new fetch for this long (Replicate retries them).
RETRY_AFTER_FAILURE = 10.0
# A fetch holds one thread-pool thread (the others answer 503 meanwhile): keep it short.
FETCH_TIMEOUT_SECONDS = 10.0
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


class SecretPending(Exception):
    """No secret to check against yet: a fetch is running, or one failed moments ago. Answer 503 at
    once (Replicate retries a delivery) rather than make the request wait for the fetch."""


class WebhookSecret:
    """The signing secret: from GENQUEUE_WEBHOOK_SECRET, else fetched from Replicate and cached.

    `fetch` is injectable for tests; by default it calls GET /v1/webhooks/default/secret with the
    Replicate token (the only place the API process uses that token).

    A fetch is network I/O that can take seconds, and deliveries run on the thread pool every route
    needs: so at most one fetch runs at a time, in the thread that claimed it, with no lock held; any
    other caller meanwhile gets `SecretPending` at once instead of a thread parked behind the fetch
    (40 such parked deliveries used to stall the whole API). A failed fetch is not retried for
    RETRY_AFTER_FAILURE seconds, so a Replicate outage does not become one fetch per delivery.
    `prefetch` runs the first fetch in the background when the app starts."""

    def __init__(self, settings: Settings, fetch: Callable[[], str] | None = None) -> None:
        configured = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
        self._fixed = configured or None
        self._fetch = fetch or (lambda: _fetch_default_secret(settings))
        self._lock = threading.Lock()  # guards the fields below; never held across a fetch
        self._cached: str | None = None
        self._fetched_at = 0.0
        self._fetching = False
        self._failed_at: float | None = None

    def get(self) -> str:
        if self._fixed:
            return self._fixed
        with self._lock:
            if self._cached is not None:
                return self._cached
            self._claim()
        return self._fetch_claimed()

    def refresh_after_mismatch(self) -> bool:
        """Re-fetch a fetched secret (Replicate may have rotated it); True if it changed. False, with
        nothing fetched, when it was fetched moments ago (no refetch storm) or a fetch is under way."""
        if self._fixed:
            return False
        with self._lock:
            if time.monotonic() - self._fetched_at < REFETCH_SECONDS:
                return False
            try:
                self._claim()
            except SecretPending:
                return False
            old = self._cached
        return self._fetch_claimed() != old

    def prefetch(self) -> threading.Thread | None:
        """Start fetching in a background thread (at start-up), so the first delivery finds the secret;
        None when there is nothing to fetch or a fetch is already running."""
        if self._fixed:
            return None
        with self._lock:
            if self._cached is not None:
                return None
            try:
                self._claim()
            except SecretPending:
                return None

        def run() -> None:
            try:
                self._fetch_claimed()
            except Exception as exc:  # the type only: the message could quote a response
                log.warning("could not fetch the webhook signing secret at start-up (%s); deliveries "
                            "answer 503 until a fetch succeeds", type(exc).__name__)

        thread = threading.Thread(target=run, name="webhook-secret-fetch", daemon=True)
        thread.start()
        return thread

    def _claim(self) -> None:
        """Become the one fetcher (the lock is held by the caller), or raise SecretPending."""
        if self._fetching:
            raise SecretPending("the webhook signing secret is being fetched")
        if self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_AFTER_FAILURE:
            raise SecretPending("fetching the webhook signing secret failed moments ago")
        self._fetching = True

    def _fetch_claimed(self) -> str:
        try:
            value = self._fetch()  # network I/O: no lock held
        except BaseException:
            with self._lock:
                self._fetching, self._failed_at = False, time.monotonic()
            raise
        with self._lock:
            self._cached, self._fetched_at = value, time.monotonic()
            self._fetching, self._failed_at = False, None
        return value


def _fetch_default_secret(settings: Settings) -> str:
    url = f"{settings.replicate_base_url}/webhooks/default/secret"
    response = httpx.get(url, headers={"Authorization": f"Bearer {settings.token()}"},
                         timeout=FETCH_TIMEOUT_SECONDS)
    response.raise_for_status()
    key = response.json().get("key")
    if not isinstance(key, str) or not key.startswith("whsec_"):
        raise WebhookRejected("Replicate returned no whsec_ webhook secret")
    return key
