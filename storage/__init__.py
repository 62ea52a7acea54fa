"""Object storage for job outputs: local directory or S3-compatible bucket."""

from genqueue.storage.base import Storage, StoredObject
from genqueue.storage.errors import StorageError, StorageNotFound
from genqueue.storage.factory import make_storage
from genqueue.storage.keys import output_key, validate_key
from genqueue.storage.local import LocalStorage
from genqueue.storage.s3 import S3Storage, build_s3_client

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
