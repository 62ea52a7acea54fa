"""What the client raises. An API answer that is not 2xx becomes an `APIError` (a subclass per status)
carrying the API's own `code`, `message` and `fields` (`[{"field", "reason"}]`), so a caller can react
to `input.prompt: is required` without parsing text. A job that ended badly is a `JobError`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genqueue.client.types import Job


class GenqueueError(Exception):
    """Base of everything this client raises on purpose."""


class TransportError(GenqueueError):
    """The API could not be reached or the connection broke (no HTTP answer to read)."""


@dataclass(frozen=True)
class FieldError:
    field: str  # e.g. "input.prompt", "header.Prefer", "cursor"
    reason: str


class APIError(GenqueueError):
    """A 4xx/5xx answer. `code` is the API's (`validation_error`, `not_found`, `quota_exceeded`...)."""

    def __init__(self, status: int, code: str, message: str, fields: tuple[FieldError, ...] = (),
                 headers: Mapping[str, str] | None = None) -> None:
        shown = "; ".join(f"{f.field}: {f.reason}" for f in fields)
        super().__init__(f"{status} {code}: {message}" + (f" ({shown})" if shown else ""))
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}  # names are case-insensitive

    def reasons(self, field: str) -> list[str]:
        """The reasons given for one field (empty when the API named no such field)."""
        return [f.reason for f in self.fields if f.field == field]


class BadRequestError(APIError):
    """400: e.g. `invalid_json`."""


class AuthenticationError(APIError):
    """401: a missing, unknown or revoked key."""


class PermissionDeniedError(APIError):
    """403: the key's role may not do this."""


class NotFoundError(APIError):
    """404: no such job, batch or output (or not this key's)."""


class ConflictError(APIError):
    """409: `not_cancelable`, an Idempotency-Key reused with another body..."""


class PayloadTooLargeError(APIError):
    """413."""


class ValidationError(APIError):
    """422 `validation_error`: `fields` names each bad field and why."""


class RateLimitError(APIError):
    """429: `rate_limited`, or `quota_exceeded` (the key's --max-queued)."""

    @property
    def retry_after(self) -> float | None:
        value = self.headers.get("retry-after")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


class ServerError(APIError):
    """5xx."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
    409: ConflictError, 413: PayloadTooLargeError, 422: ValidationError, 429: RateLimitError,
}


def api_error(status: int, body: Any, headers: Mapping[str, str] | None = None) -> APIError:
    """The exception for an error answer. `body` is the parsed JSON, or None when it was not JSON (a
    proxy's HTML page): then the code is derived from the status."""
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else APIError)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return cls(status, f"http_{status}", "the API answered with an unexpected body", (), headers)
    fields = tuple(FieldError(str(f.get("field", "")), str(f.get("reason", "")))
                   for f in error.get("fields") or [] if isinstance(f, dict))
    return cls(status, str(error.get("code") or f"http_{status}"), str(error.get("message") or ""), fields, headers)


class JobError(GenqueueError):
    """`run()`'s job ended without outputs: `code` and `message` are the job's `error`."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.code = job.error.code if job.error else job.status
        self.message = (job.error.message if job.error else None) or f"the job was {job.status}"
        super().__init__(f"job {job.id} {job.status}: {self.code}: {self.message}")


class JobFailedError(JobError):
    """The job's status is `failed`."""


class JobCanceledError(JobError):
    """The job's status is `canceled`."""


class WaitTimeout(GenqueueError, TimeoutError):
    """`wait()` reached the caller's timeout first; `job` is the last state read."""

    def __init__(self, job: Job, timeout: float) -> None:
        self.job = job
        super().__init__(f"job {job.id} still {job.status} after {timeout:g} s")


class ChecksumMismatch(GenqueueError):
    """Downloaded bytes do not have the sha256 the job recorded for them."""


class EventStreamError(GenqueueError):
    """The event stream broke and could not be resumed."""
