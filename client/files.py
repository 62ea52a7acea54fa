"""A job's stored output as a file-like object, as `replicate.run` hands out: `.url`, `.read()`,
iteration over chunks, `.save(path)`. Bytes are streamed from the API (with the caller's key, only to
the API the client was made for) and checked against the sha256 the job recorded for them."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx

from genqueue.client import calls
from genqueue.client.errors import ChecksumMismatch, TransportError
from genqueue.client.types import OutputInfo


class Sha256Check:
    """Hashes chunks as they pass; `done()` raises if the whole did not match."""

    def __init__(self, expected: str | None, where: str) -> None:
        self._expected = expected
        self._where = where
        self._hash = hashlib.sha256()

    def update(self, chunk: bytes) -> bytes:
        self._hash.update(chunk)
        return chunk

    def done(self) -> None:
        got = self._hash.hexdigest()
        if self._expected is not None and got != self._expected:
            raise ChecksumMismatch(f"{self._where}: sha256 {got} but the job recorded {self._expected}")


class _Output:
    def __init__(self, job_id: str, info: OutputInfo) -> None:
        self.job_id = job_id
        self.index = info.index
        self.url = info.url  # the API's download URL for these bytes (needs the same key)
        self.sha256 = info.sha256
        self.size = info.size
        self.content_type = info.content_type
        self._call = calls.output(job_id, info.index)

    def _check(self) -> Sha256Check:
        return Sha256Check(self.sha256, f"job {self.job_id} output {self.index}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, sha256={self.sha256!r}, size={self.size!r})"


def _temp_beside(path: Path) -> tuple[int, str]:
    """A temporary file in the target's folder: the finished file is renamed into place, so a failed
    or mismatched download never leaves a partial file under the final name."""
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent or ".")


class FileOutput(_Output):
    def __init__(self, http: httpx.Client, job_id: str, info: OutputInfo) -> None:
        super().__init__(job_id, info)
        self._http = http

    def iter_bytes(self) -> Iterator[bytes]:
        """The bytes as they arrive; after the last chunk, ChecksumMismatch if they were not the job's."""
        check = self._check()
        try:
            with self._http.stream(self._call.method, self._call.path) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    calls.check(resp)
                for chunk in resp.iter_bytes():
                    yield check.update(chunk)
        except httpx.TransportError as exc:
            raise TransportError(f"downloading job {self.job_id} output {self.index}: {exc}") from exc
        check.done()

    __iter__ = iter_bytes

    def read(self) -> bytes:
        return b"".join(self.iter_bytes())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Stream to `path` (created or replaced only once every byte arrived and matched)."""
        target = Path(path)
        fd, tmp = _temp_beside(target)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in self.iter_bytes():
                    out.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return target


class AsyncFileOutput(_Output):
    def __init__(self, http: httpx.AsyncClient, job_id: str, info: OutputInfo) -> None:
        super().__init__(job_id, info)
        self._http = http

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        check = self._check()
        try:
            async with self._http.stream(self._call.method, self._call.path) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    calls.check(resp)
                async for chunk in resp.aiter_bytes():
                    yield check.update(chunk)
        except httpx.TransportError as exc:
            raise TransportError(f"downloading job {self.job_id} output {self.index}: {exc}") from exc
        check.done()

    __aiter__ = aiter_bytes

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_bytes()])

    async def save(self, path: str | os.PathLike[str]) -> Path:
        """As `FileOutput.save` (the local writes are small, blocking ones)."""
        target = Path(path)
        fd, tmp = _temp_beside(target)
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in self.aiter_bytes():
                    out.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return target
