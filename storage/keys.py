"""Object key helpers: validation shared by all backends and deterministic output keys."""

from __future__ import annotations

import mimetypes
import posixpath

_EXTENSION_BY_TYPE: dict[str, str] = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/jpg": "jpg",
    "image/pjpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/svg+xml": "svg",
}
_TYPE_BY_EXTENSION: dict[str, str] = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "svg": "image/svg+xml",
    "bin": "application/octet-stream",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def normalize_content_type(content_type: str) -> str:
    """``"Image/PNG; charset=x"`` -> ``"image/png"``."""
    return content_type.split(";", 1)[0].strip().lower()


def extension_for(content_type: str) -> str:
    """File extension (without dot) for a content type; ``"bin"`` when unknown."""
    return _EXTENSION_BY_TYPE.get(normalize_content_type(content_type), "bin")


def content_type_for(key: str) -> str:
    """Content type implied by a key's extension (inverse of ``extension_for``)."""
    ext = posixpath.splitext(key)[1].lstrip(".").lower()
    if ext in _TYPE_BY_EXTENSION:
        return _TYPE_BY_EXTENSION[ext]
    guessed, _ = mimetypes.guess_type("x." + ext, strict=True) if ext else (None, None)
    return guessed or DEFAULT_CONTENT_TYPE


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise ``ValueError``.

    Rejected: empty keys, absolute keys, backslashes, NUL, and empty/``.``/``..`` segments
    (so keys can never escape a local root and map 1:1 onto S3 keys).
    """
    if not isinstance(key, str) or not key:
        raise ValueError("storage key must be a non-empty string")
    if key.startswith("/"):
        raise ValueError(f"storage key must be relative, got {key!r}")
    if "\\" in key or "\x00" in key:
        raise ValueError(f"storage key contains a forbidden character: {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"storage key has an empty, '.' or '..' segment: {key!r}")
    return key


def output_key(job_id: str, index: int, content_type: str) -> str:
    """Deterministic key for output ``index`` of job ``job_id``: ``jobs/<job_id>/<index>.<ext>``."""
    if not job_id or "/" in job_id or "\\" in job_id or job_id in (".", "..") or "\x00" in job_id:
        raise ValueError(f"invalid job id for an output key: {job_id!r}")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"output index must be a non-negative int, got {index!r}")
    return f"jobs/{job_id}/{index}.{extension_for(content_type)}"
