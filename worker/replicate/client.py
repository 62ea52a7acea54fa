"""A small, predictable client for Replicate's prediction endpoints.

One injected ``httpx.Client``; no retries (the task layer decides); every failure is mapped to
``worker.replicate.errors``. URLs handed back by the API (``urls.get``, ``urls.cancel``, ``next``)
are only followed when they lie under the configured base URL, so a forged or tampered response can
never make us send the API token elsewhere.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Collection, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

from genqueue.core.logs import registered_secrets, scrub
from genqueue.worker.egress import DEFAULT_PORTS
from genqueue.worker.replicate.errors import ForbiddenURLError, PermanentError, ReplicateError
from genqueue.worker.replicate.responses import (
    MAX_BODY_BYTES,
    BodyTooLarge,
    decode,
    read_capped,
    transport_error,
)
from genqueue.worker.replicate.types import Page, Prediction, RateLimitHeaders, parse_page, parse_prediction
from genqueue.worker.transport import CookielessClient

logger = logging.getLogger(__name__)

USER_AGENT = "genqueue/0.1"
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PREDICTION_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def make_http_client(
    *,
    base_url: str,
    token: str,
    timeout: float = 30.0,
    connect_timeout: float = 5.0,
    transport: httpx.BaseTransport | None = None,
    max_connections: int = 100,
) -> httpx.Client:
    """An ``httpx.Client`` for the Replicate API: bearer auth, explicit timeouts, no redirects."""
    return CookielessClient(
        base_url=base_url,
        headers={
            "Authorization": f"Bearer {token}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        },
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        follow_redirects=False,
        transport=transport,
    )


def version_hex(version: str) -> str:
    """``owner/name:<hex>`` or bare ``<hex>`` -> lowercase ``<hex>``."""
    return version.rsplit(":", 1)[-1].strip().lower()


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _scrubbed_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrubbed_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed_value(v) for v in value]
    return value


def scrub_error(exc: ReplicateError) -> ReplicateError:
    """`exc` with the job's secrets (those opened in this context, `core.logs`) masked in its text.

    Replicate's problem+json may echo an input value ("token 'sk_...' is invalid"), and the message
    goes on to the job's error_message (stored, shown by the API) and to logs."""
    if not registered_secrets():
        return exc
    exc.message = scrub(exc.message)
    exc.args = tuple(scrub(a) if isinstance(a, str) else a for a in exc.args)
    exc.title = scrub(exc.title) if exc.title else exc.title
    exc.detail = scrub(exc.detail) if exc.detail else exc.detail
    if isinstance(exc, PermanentError):
        exc.invalid_fields = [_scrubbed_value(f) for f in exc.invalid_fields]
    return exc


def _owner_name(value: str, what: str) -> tuple[str, str]:
    parts = value.split("/")
    if len(parts) != 2 or not all(_SLUG.match(p) for p in parts):
        raise ValueError(f"{what} must look like 'owner/name'")
    return parts[0], parts[1]


class ReplicateClient:
    """Create, poll, cancel and list predictions. ``base_url`` includes ``/v1``.

    ``on_response(endpoint, status_code)`` is called once per HTTP exchange (endpoint is one of
    ``create``, ``get``, ``cancel``, ``list``; status 0 when no response arrived), and
    ``on_rate_headers(RateLimitHeaders)`` once per answer that arrived: the account's budget as
    Replicate reports it on every response (the worker's limiter learns from it; the client only
    reports). A failing hook is logged, never raised.
    Answers are read unencoded and up to ``max_body_bytes`` (see ``responses.MAX_BODY_BYTES``).
    """

    def __init__(
        self,
        http: httpx.Client,
        base_url: str,
        on_response: Callable[[str, int], None] | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        on_rate_headers: Callable[[RateLimitHeaders], None] | None = None,
    ) -> None:
        self._http = http
        self._max_body_bytes = max_body_bytes
        self._base_url = base_url.rstrip("/")
        base = httpx.URL(self._base_url)
        if base.scheme not in DEFAULT_PORTS or not base.host:
            raise ValueError("base_url must be an absolute http(s) URL")
        self._origin = self._origin_of(base)
        self._base_path = base.path.rstrip("/")
        self._on_response = on_response
        self._on_rate_headers = on_rate_headers

    # ---- public API -------------------------------------------------------------------------

    def create(
        self,
        *,
        input: dict[str, Any],
        version: str | None = None,
        model: str | None = None,
        deployment: str | None = None,
        webhook: str | None = None,
        webhook_events_filter: list[str] | None = None,
        cancel_after: float | None = None,
        wait: int | None = None,
    ) -> Prediction:
        """Create a prediction from exactly one of ``version``, ``model`` or ``deployment``."""
        if sum(x is not None for x in (version, model, deployment)) != 1:
            raise ValueError("exactly one of version, model, deployment is required")
        body: dict[str, Any] = {}
        if version is not None:
            if not version.strip():
                raise ValueError("version must not be empty")
            url = f"{self._base_url}/predictions"
            body["version"] = version
        elif model is not None:
            owner, name = _owner_name(model, "model")
            url = f"{self._base_url}/models/{owner}/{name}/predictions"
        else:
            owner, name = _owner_name(deployment or "", "deployment")
            url = f"{self._base_url}/deployments/{owner}/{name}/predictions"
        body["input"] = input
        if webhook is not None:
            body["webhook"] = webhook
        if webhook_events_filter is not None:
            body["webhook_events_filter"] = list(webhook_events_filter)
        headers: dict[str, str] = {}
        if cancel_after is not None:
            headers["Cancel-After"] = f"{max(5, math.ceil(cancel_after))}s"
        timeout: httpx.Timeout | None = None
        if wait is not None:
            if not 1 <= wait <= 60:
                raise ValueError("wait must be between 1 and 60 seconds")
            headers["Prefer"] = f"wait={wait}"
            current = self._http.timeout
            read = float(wait + 10)
            if current.read is not None:
                read = max(read, current.read)
            timeout = httpx.Timeout(
                connect=current.connect, read=read, write=current.write, pool=current.pool
            )
        data = self._request("create", "POST", url, json=body, headers=headers, timeout=timeout)
        return parse_prediction(data)

    def get(self, url: str) -> Prediction:
        """Fetch a prediction by its absolute ``urls.get``."""
        self._check_url(url)
        return parse_prediction(self._request("get", "GET", url))

    def get_by_id(self, prediction_id: str) -> Prediction:
        if not _PREDICTION_ID.match(prediction_id):
            raise ValueError("invalid prediction id")
        return self.get(f"{self._base_url}/predictions/{prediction_id}")

    def cancel(self, url: str) -> Prediction:
        """Cancel via the absolute ``urls.cancel``; returns the (possibly unchanged) prediction."""
        self._check_url(url)
        return parse_prediction(self._request("cancel", "POST", url))

    def list(
        self,
        *,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        url: str | None = None,
    ) -> Page:
        """One page of predictions, newest first. ``url`` follows a ``next`` link verbatim."""
        if url is not None:
            if created_after is not None or created_before is not None:
                raise ValueError("pass either url or created_after/created_before, not both")
            self._check_url(url)
            return parse_page(self._request("list", "GET", url))
        params: dict[str, str] = {}
        if created_after is not None:
            params["created_after"] = _iso(created_after)
        if created_before is not None:
            params["created_before"] = _iso(created_before)
        return parse_page(self._request("list", "GET", f"{self._base_url}/predictions", params=params))

    def iter_predictions(
        self,
        *,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        max_pages: int = 50,
    ) -> Iterator[Prediction]:
        """Predictions across up to ``max_pages`` list pages, newest first."""
        page = self.list(created_after=created_after, created_before=created_before)
        pages = 1
        while True:
            yield from page.results
            if not page.next or pages >= max_pages:
                return
            page = self.list(url=page.next)
            pages += 1

    def find_created(
        self,
        *,
        created_after: datetime,
        version: str | None,
        model: str | None,
        input_digest: str,
        exclude: Collection[str] = (),
    ) -> Prediction | None:
        """Find the prediction a lost create made: same input digest and same version (hex part) or
        model, created at or after ``created_after``. When several match, the oldest one wins (the
        earliest create after ``created_after`` is the likeliest to be ours). ``exclude``: ids known to
        be someone else's (a retried job's earlier attempts have the same input)."""
        if created_after.tzinfo is None:
            created_after = created_after.replace(tzinfo=UTC)
        want_version = version_hex(version) if version else None
        want_model = model.lower() if model else None
        found: Prediction | None = None
        for prediction in self.iter_predictions(created_after=created_after):
            if prediction.created_at is not None and prediction.created_at < created_after:
                break  # newest first: everything after this is older still
            if prediction.input_digest != input_digest or prediction.id in exclude:
                continue
            if want_version is not None and version_hex(prediction.version or "") != want_version:
                continue
            if want_model is not None and (prediction.model or "").lower() != want_model:
                continue
            found = prediction
        return found

    # ---- internals --------------------------------------------------------------------------

    @staticmethod
    def _origin_of(url: httpx.URL) -> tuple[str, str, int | None]:
        return (url.scheme, url.host.lower(), url.port or DEFAULT_PORTS.get(url.scheme))

    def _check_url(self, url: str) -> None:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise ForbiddenURLError("refused URL: not a valid URL") from None
        path = parsed.path
        if (
            self._origin_of(parsed) != self._origin
            or parsed.userinfo
            or not (path == self._base_path or path.startswith(self._base_path + "/"))
        ):
            raise ForbiddenURLError("refused URL: not under the configured Replicate API base URL")

    def _notify(self, endpoint: str, status: int, response: httpx.Response | None = None) -> None:
        if self._on_response is not None:
            try:
                self._on_response(endpoint, status)
            except Exception:
                logger.warning("on_response hook failed", exc_info=True)
        if self._on_rate_headers is not None and response is not None:
            headers = RateLimitHeaders(endpoint, status, response.headers.get("ratelimit-remaining"),
                                       response.headers.get("ratelimit-reset"))
            try:
                self._on_rate_headers(headers)
            except Exception:
                logger.warning("on_rate_headers hook failed", exc_info=True)

    def _request(
        self,
        endpoint: str,
        method: str,
        url: str,
        *,
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> Any:
        # identity: a compressed answer would be inflated whole before any size cap (read_capped).
        merged = {"Accept-Encoding": "identity", **(headers or {})}
        kwargs: dict[str, Any] = {"json": json, "headers": merged, "params": params}
        if timeout is not None:
            kwargs["timeout"] = timeout
        request = self._http.build_request(method, url, **kwargs)
        try:
            response = self._http.send(request, stream=True, follow_redirects=False)
            read_capped(response, self._max_body_bytes)
        except httpx.TransportError as exc:
            self._notify(endpoint, 0)  # as before streaming: a body cut short counts as no answer
            raise transport_error(endpoint, exc) from exc
        except BodyTooLarge as exc:
            self._notify(endpoint, response.status_code, response)
            raise PermanentError(f"{endpoint}: unusable response (HTTP {response.status_code}, {exc})",
                                 status_code=response.status_code) from None
        self._notify(endpoint, response.status_code, response)
        try:
            return decode(endpoint, response)
        except ReplicateError as exc:
            raise scrub_error(exc) from None
