"""Object storage for job outputs: local directory or S3-compatible bucket."""

from worker.storage.base import Storage, StoredObject
from worker.storage.errors import StorageError, StorageNotFound
from worker.storage.factory import make_storage
from worker.storage.keys import output_key, validate_key
from worker.storage.local import LocalStorage
from worker.storage.s3 import S3Storage, build_s3_client

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
