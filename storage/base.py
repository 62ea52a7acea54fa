"""Backend-neutral types: the stored-object record and the ``Storage`` protocol."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

CHUNK_SIZE = 1024 * 1024
"""Read size used when streaming objects back out of a backend."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    uri: str
    size: int
    sha256: str
    content_type: str


@runtime_checkable
class Storage(Protocol):
    def put_stream(self, key: str, chunks: Iterable[bytes], content_type: str) -> StoredObject:
        """Store ``chunks`` under ``key`` atomically; no partial object is visible on failure.

        Exceptions raised by ``chunks`` itself propagate unchanged; backend failures raise
        ``StorageError``.
        """
        ...

    def open(self, key: str) -> tuple[Iterator[bytes], str, int]:
        """Return ``(chunks, content_type, size)``; raise ``StorageNotFound`` if missing."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Delete ``key``; deleting a missing key is not an error."""
        ...

    def check(self) -> None:
        """Raise ``StorageError`` with a clear message if the backend is unusable."""
        ...

    def describe(self) -> str:
        """Human-readable location without credentials."""
        ...


class HashingCounter:
    """Accumulates sha256 and byte count of data as it streams past."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    @property
    def hexdigest(self) -> str:
        return self._hash.hexdigest()
