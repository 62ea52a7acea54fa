"""Replicate HTTP API client: create, poll, cancel and list predictions."""

from genqueue.worker.replicate.client import ReplicateClient, make_http_client, version_hex
from genqueue.worker.replicate.errors import ForbiddenURLError, PermanentError, ReplicateError, TransientError
from genqueue.worker.replicate.types import (
    KNOWN_STATUSES,
    TERMINAL_STATUSES,
    Page,
    Prediction,
    RateLimitHeaders,
    input_digest,
    parse_page,
    parse_prediction,
    parse_timestamp,
)

__all__ = [
    "KNOWN_STATUSES",
    "TERMINAL_STATUSES",
    "ForbiddenURLError",
    "Page",
    "PermanentError",
    "Prediction",
    "RateLimitHeaders",
    "ReplicateClient",
    "ReplicateError",
    "TransientError",
    "input_digest",
    "make_http_client",
    "parse_page",
    "parse_prediction",
    "parse_timestamp",
    "version_hex",
]
