"""S3 / S3-compatible backend (AWS, SeaweedFS, MinIO, ...) via boto3.

Uploads are spooled to a ``SpooledTemporaryFile`` (in memory up to ``spool_max_bytes``,
then on disk) while sha256 and size are computed, and only then sent with
``upload_fileobj`` — single PUT for small objects, multipart (aborted by s3transfer on
error) for large ones. So memory stays bounded, the sha256 can be stored as object
metadata from the first byte the object becomes visible, and a producer failing midway
uploads nothing at all.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from genqueue.storage.base import CHUNK_SIZE, HashingCounter, StoredObject
from genqueue.storage.errors import StorageError, StorageNotFound
from genqueue.storage.keys import DEFAULT_CONTENT_TYPE, validate_key

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import GetObjectOutputTypeDef

SHA256_METADATA_KEY = "sha256"
_MiB = 1024 * 1024
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})


def build_s3_client(
    *,
    endpoint_url: str | None = None,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    aws_region: str | None = None,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
    max_attempts: int = 5,
) -> S3Client:
    """boto3 S3 client: sigv4, path-style addressing, explicit timeouts and retries.

    Checksums are only computed when an operation requires them, for compatibility with
    S3-compatible servers that do not implement the newer flexible-checksum trailers.
    Credentials left as ``None`` fall back to boto3's usual chain (env, profile, role).
    """
    config = Config(
        region_name=aws_region or "us-east-1",
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=endpoint_url or None,
        aws_access_key_id=aws_access_key_id or None,
        aws_secret_access_key=aws_secret_access_key or None,
        config=config,
    )


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _spool_error(uri: str, exc: OSError) -> StorageError:
    return StorageError(f"spooling {uri} to a temporary file failed: {exc.strerror}", reason=exc.strerror)


class _BodyChunks(Iterator[bytes]):
    """Iterates a GetObject body, closing it at the end and mapping errors to StorageError."""

    def __init__(self, response: GetObjectOutputTypeDef, where: str, redact: Callable[[str], str]) -> None:
        self._body: Any = response["Body"]
        self._iter: Iterator[bytes] = self._body.iter_chunks(CHUNK_SIZE)
        self._where = where
        self._redact = redact

    def __iter__(self) -> _BodyChunks:
        return self

    def __next__(self) -> bytes:
        if self._body is None:
            raise StopIteration
        try:
            return next(self._iter)
        except StopIteration:
            self.close()
            raise
        except (BotoCoreError, ClientError, OSError) as exc:
            self.close()
            raise StorageError(self._redact(f"reading {self._where} failed: {exc}")) from exc

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def __del__(self) -> None:
        self.close()


class S3Storage:
    """Objects stored at ``s3://<bucket>/<prefix>/<key>``."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_region: str | None = None,
        client: S3Client | None = None,
        spool_max_bytes: int = 8 * _MiB,
        part_size: int = 8 * _MiB,
        max_concurrency: int = 2,
        spool_dir: str | None = None,
    ) -> None:
        if not bucket:
            raise ValueError("S3 bucket name must not be empty")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self._client: S3Client = client or build_s3_client(
            endpoint_url=endpoint_url,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            aws_region=aws_region,
        )
        # Only used to scrub error text; never exposed.
        self._secrets = tuple(s for s in (aws_access_key_id, aws_secret_access_key) if s)
        self._spool_max_bytes = spool_max_bytes
        self._spool_dir = spool_dir
        self._transfer = TransferConfig(
            multipart_threshold=part_size,
            multipart_chunksize=part_size,
            max_concurrency=max_concurrency,
            use_threads=max_concurrency > 1,
        )

    # -- helpers -----------------------------------------------------------------------

    def _full_key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _uri(self, full_key: str) -> str:
        return f"s3://{self.bucket}/{full_key}"

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _fail(self, action: str, where: str, exc: Exception) -> StorageError:
        reason = _error_code(exc) if isinstance(exc, ClientError) else ""
        return StorageError(self._redact(f"S3 {action} {where} failed ({self._endpoint()}): {exc}"),
                            reason=reason or type(exc).__name__)

    def _endpoint(self) -> str:
        return self.endpoint_url or "AWS default endpoint"

    # -- Storage protocol --------------------------------------------------------------

    def put_stream(self, key: str, chunks: Iterable[bytes], content_type: str) -> StoredObject:
        full_key = self._full_key(key)
        uri = self._uri(full_key)
        content_type = content_type or DEFAULT_CONTENT_TYPE
        counter = HashingCounter()
        spool = tempfile.SpooledTemporaryFile(max_size=self._spool_max_bytes, dir=self._spool_dir)  # noqa: SIM115 - see finally
        try:
            for chunk in chunks:  # errors from the producer propagate unchanged; nothing uploaded
                counter.update(chunk)
                try:
                    spool.write(chunk)
                except OSError as exc:
                    raise _spool_error(uri, exc) from exc
            try:
                spool.seek(0)  # flushes what a rolled-over spool still buffers: ENOSPC can surface here
            except OSError as exc:
                raise _spool_error(uri, exc) from exc
            try:
                self._client.upload_fileobj(
                    spool,
                    self.bucket,
                    full_key,
                    ExtraArgs={
                        "ContentType": content_type,
                        "Metadata": {SHA256_METADATA_KEY: counter.hexdigest},
                    },
                    Config=self._transfer,
                )
            except (BotoCoreError, ClientError, OSError) as exc:
                raise self._fail("upload of", uri, exc) from exc
        finally:
            # The spool is only scratch space: a close that retries a refused flush (disk full) must
            # not replace the StorageError above with a bare OSError.
            with contextlib.suppress(OSError):
                spool.close()
        return StoredObject(
            key=key, uri=uri, size=counter.size, sha256=counter.hexdigest, content_type=content_type
        )

    def open(self, key: str) -> tuple[Iterator[bytes], str, int]:
        full_key = self._full_key(key)
        uri = self._uri(full_key)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=full_key)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                raise StorageNotFound(f"no object {uri}") from exc
            raise self._fail("get of", uri, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("get of", uri, exc) from exc
        content_type = response.get("ContentType") or DEFAULT_CONTENT_TYPE
        size = int(response.get("ContentLength", 0))
        return _BodyChunks(response, uri, self._redact), content_type, size

    def exists(self, key: str) -> bool:
        full_key = self._full_key(key)
        try:
            self._client.head_object(Bucket=self.bucket, Key=full_key)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                return False
            raise self._fail("head of", self._uri(full_key), exc) from exc
        except BotoCoreError as exc:
            raise self._fail("head of", self._uri(full_key), exc) from exc
        return True

    def delete(self, key: str) -> None:
        full_key = self._full_key(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=full_key)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES - {"NoSuchBucket"}:
                return
            raise self._fail("delete of", self._uri(full_key), exc) from exc
        except BotoCoreError as exc:
            raise self._fail("delete of", self._uri(full_key), exc) from exc

    def check(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = _error_code(exc)
            if code in _NOT_FOUND_CODES:
                raise StorageError(f"S3 bucket {self.bucket!r} does not exist at {self._endpoint()}") from exc
            if code in ("403", "AccessDenied", "Forbidden"):
                raise StorageError(
                    f"access denied to S3 bucket {self.bucket!r} at {self._endpoint()} "
                    "(check the credentials and bucket policy)"
                ) from exc
            raise self._fail("check of bucket", repr(self.bucket), exc) from exc
        except BotoCoreError as exc:
            raise StorageError(
                self._redact(f"cannot reach S3 at {self._endpoint()} for bucket {self.bucket!r}: {exc}")
            ) from exc

    def describe(self) -> str:
        location = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        return f"{location} @ {self._endpoint()}"

    def __repr__(self) -> str:
        return f"S3Storage({self.describe()!r})"
