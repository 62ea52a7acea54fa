"""Object storage for job outputs: local directory or S3-compatible bucket."""

from storage.base import Storage, StoredObject
from storage.errors import StorageError, StorageNotFound
from storage.factory import make_storage
from storage.keys import output_key, validate_key
from storage.local import LocalStorage
from storage.s3 import S3Storage, build_s3_client

__all__ = [
    "LocalStorage",
    "S3Storage",
    "Storage",
    "StorageError",
    "StorageNotFound",
    "StoredObject",
    "build_s3_client",
    "make_storage",
    "output_key",
    "validate_key",
]
