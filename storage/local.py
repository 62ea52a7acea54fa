"""Filesystem backend.

Layout: one plain file per object at ``<root>/<key>``; nothing else is stored.

The content type is derived from the key's extension rather than kept in a sidecar file:
every key genqueue writes comes from ``output_key``, whose extension is chosen *from* the
content type, so the round trip is lossless for our keys; a single file per object keeps
writes atomic with one ``os.replace`` (a sidecar would need a second, separately-atomic
write and could drift), and the directory stays directly servable/browsable by any static
file server. Unknown extensions read back as ``application/octet-stream``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from genqueue.storage.base import CHUNK_SIZE, HashingCounter, StoredObject
from genqueue.storage.errors import StorageError, StorageNotFound
from genqueue.storage.keys import content_type_for, validate_key

_TMP_PREFIX = ".tmp-"
_FILE_MODE = 0o644


class _FileChunks(Iterator[bytes]):
    """Iterator over a file's chunks that closes the file when exhausted or closed."""

    def __init__(self, fh: BinaryIO, chunk_size: int = CHUNK_SIZE) -> None:
        self._fh: BinaryIO | None = fh
        self._chunk_size = chunk_size

    def __iter__(self) -> _FileChunks:
        return self

    def __next__(self) -> bytes:
        if self._fh is None:
            raise StopIteration
        chunk = self._fh.read(self._chunk_size)
        if not chunk:
            self.close()
            raise StopIteration
        return chunk

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __del__(self) -> None:
        self.close()


def _error(what: str, exc: OSError) -> StorageError:
    """A failed write, its cause kept apart from the path (see StorageError.reason)."""
    return StorageError(f"{what}: {exc.strerror}", reason=exc.strerror)


@contextlib.contextmanager
def _temporary(fd: int, path: Path) -> Iterator[BinaryIO]:
    """The temporary file as a buffered writer. After a failure it is closed without raising: its
    buffer may still hold bytes the disk refused (ENOSPC at flush), and close() would try them again
    and raise a bare OSError over the StorageError that says what happened; the file is discarded."""
    fh = os.fdopen(fd, "wb")
    try:
        yield fh
    except BaseException:
        with contextlib.suppress(OSError):
            fh.close()  # closes the descriptor even when its flush fails
        raise
    try:
        fh.close()
    except OSError as exc:
        raise _error(f"write to {path} failed", exc) from exc


class LocalStorage:
    """Objects stored as files below ``root`` (created if missing)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create storage directory {self.root}: {exc.strerror}") from exc

    def _path(self, key: str) -> Path:
        validate_key(key)
        path = self.root / key
        # Defence in depth against symlinks inside the root pointing outside it.
        if not path.resolve().is_relative_to(self.root):
            raise ValueError(f"storage key escapes the storage root: {key!r}")
        return path

    def put_stream(self, key: str, chunks: Iterable[bytes], content_type: str) -> StoredObject:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
        except OSError as exc:
            raise _error(f"cannot write to {path.parent}", exc) from exc
        counter = HashingCounter()
        try:
            with _temporary(fd, path) as fh:
                for chunk in chunks:  # errors from the producer propagate unchanged
                    counter.update(chunk)
                    try:
                        fh.write(chunk)
                    except OSError as exc:
                        raise _error(f"write to {path} failed", exc) from exc
                try:
                    fh.flush()
                    os.fchmod(fh.fileno(), _FILE_MODE)
                    os.fsync(fh.fileno())
                except OSError as exc:
                    raise _error(f"write to {path} failed", exc) from exc
            try:
                os.replace(tmp_name, path)
            except OSError as exc:
                raise _error(f"cannot move object into place at {path}", exc) from exc
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
        return StoredObject(
            key=key,
            uri=path.as_uri(),
            size=counter.size,
            sha256=counter.hexdigest,
            content_type=content_type,
        )

    def open(self, key: str) -> tuple[Iterator[bytes], str, int]:
        path = self._path(key)
        try:
            fh = path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise StorageNotFound(f"no object {key!r} in {self.root}") from exc
        except OSError as exc:
            raise StorageError(f"cannot open {path}: {exc.strerror}") from exc
        try:
            size = os.fstat(fh.fileno()).st_size
        except OSError as exc:
            fh.close()
            raise StorageError(f"cannot stat {path}: {exc.strerror}") from exc
        return _FileChunks(fh), content_type_for(key), size

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except IsADirectoryError:
            return
        except OSError as exc:
            raise StorageError(f"cannot delete {path}: {exc.strerror}") from exc

    def check(self) -> None:
        if not self.root.is_dir():
            raise StorageError(f"storage directory {self.root} does not exist or is not a directory")
        try:
            fd, probe = tempfile.mkstemp(prefix=_TMP_PREFIX + "check-", dir=self.root)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise StorageError(f"storage directory {self.root} is not writable: {exc.strerror}") from exc

    def describe(self) -> str:
        return str(self.root)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"
