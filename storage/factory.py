"""Build a ``Storage`` from a URL: ``file:///abs/dir``, a bare path, or ``s3://bucket/prefix``."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from genqueue.storage.base import Storage
from genqueue.storage.local import LocalStorage
from genqueue.storage.s3 import S3Storage


def make_storage(
    url: str,
    *,
    s3_endpoint_url: str | None = None,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    aws_region: str | None = None,
) -> Storage:
    """Return the backend for ``url``; raises ``ValueError`` for malformed/unsupported URLs.

    Error messages never echo the URL's userinfo part (credentials do not belong in it).
    """
    if not url or not url.strip():
        raise ValueError("storage URL must not be empty")
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()

    if scheme == "":
        return LocalStorage(url)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError("file storage URL must be absolute, like file:///abs/dir")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ValueError("file storage URL must be absolute, like file:///abs/dir")
        return LocalStorage(path)
    if scheme == "s3":
        if "@" in parts.netloc or parts.password is not None:
            raise ValueError("s3 storage URL must not contain credentials; pass them separately")
        bucket = parts.netloc
        if not bucket or ":" in bucket:
            raise ValueError("s3 storage URL needs a bucket, like s3://bucket/prefix")
        return S3Storage(
            bucket,
            unquote(parts.path).strip("/"),
            endpoint_url=s3_endpoint_url,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            aws_region=aws_region,
        )
    raise ValueError(f"unsupported storage URL scheme {parts.scheme!r} (use file:// or s3://)")
