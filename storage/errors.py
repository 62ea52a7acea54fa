"""Storage error hierarchy.

Messages are built from bucket/key/path/endpoint only; credentials never appear in them.
"""

from __future__ import annotations


class StorageError(Exception):
    """The storage backend is unusable or an operation on it failed."""


class StorageNotFound(StorageError):
    """The requested object does not exist."""
