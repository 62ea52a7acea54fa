"""Error hierarchy for the Replicate HTTP client.

::

    ReplicateError                 any failure talking to Replicate
    ├── TransientError             worth retrying later (connection trouble, 429, 5xx)
    └── PermanentError             retrying the same request cannot help (4xx other than 429)
        └── ForbiddenURLError      a URL outside the configured API origin; nothing was sent

Messages carry only the HTTP status, the problem+json ``title`` and ``detail`` (or the transport
error's class name). They never include request bodies: a prediction's input holds user secrets.
"""

from __future__ import annotations

from typing import Any

_MAX_TEXT = 500


def clip(text: str | None) -> str | None:
    if text is None:
        return None
    text = str(text)
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."


class ReplicateError(Exception):
    """Base class. ``status_code`` is None when no HTTP response was received."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        title: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.title = clip(title)
        self.detail = clip(detail)

    def __str__(self) -> str:
        return self.message


class TransientError(ReplicateError):
    """A failure that may go away: connection errors, timeouts, dropped connections, 429, 5xx.

    ``retry_after`` is the server's hint in seconds (429 only). ``request_sent_maybe`` is True when the
    request may have reached the server (so a create may have happened even though we got no answer);
    it is False only for connect failures and 429s, where a create surely did not happen.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        title: str | None = None,
        detail: str | None = None,
        retry_after: float | None = None,
        request_sent_maybe: bool = True,
    ) -> None:
        super().__init__(message, status_code=status_code, title=title, detail=detail)
        self.retry_after = retry_after
        self.request_sent_maybe = request_sent_maybe


class PermanentError(ReplicateError):
    """A 4xx (other than 429) or a malformed answer. ``invalid_fields`` comes from 422 bodies."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        title: str | None = None,
        detail: str | None = None,
        invalid_fields: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, title=title, detail=detail)
        self.invalid_fields: list[dict[str, Any]] = invalid_fields or []


class ForbiddenURLError(PermanentError):
    """The URL is not under the configured API base URL; no request was sent."""
