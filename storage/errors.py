"""Storage error hierarchy.

Messages are built from bucket/key/path/endpoint only; credentials never appear in them.
"""

from __future__ import annotations


class StorageError(Exception):
    """The storage backend is unusable or an operation on it failed.

    ``reason`` is the cause alone ("No space left on device", "EndpointConnectionError"), without the
    bucket, folder or endpoint the message names: a job's error may show it to keys that must not see
    where outputs are stored.
    """

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or "storage error"


class StorageNotFound(StorageError):
    """The requested object does not exist."""
