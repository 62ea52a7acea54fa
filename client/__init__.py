"""genqueue's Python client: `Client` (blocking) and `AsyncClient` over the HTTP API, for code that
calls a genqueue API from anywhere. It imports nothing of the server side (only httpx).

    from genqueue.client import Client
    with Client("http://genqueue:8000", api_key) as gq:
        [image] = gq.run("jigsawstack/image-generation:43d5...", {"prompt": "a lighthouse", "api_key": key})
        image.save("lighthouse.png")
"""

from genqueue.client.aio import AsyncClient
from genqueue.client.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ChecksumMismatch,
    ConflictError,
    EventStreamError,
    FieldError,
    GenqueueError,
    JobCanceledError,
    JobError,
    JobFailedError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TransportError,
    ValidationError,
    WaitTimeout,
)
from genqueue.client.files import AsyncFileOutput, FileOutput
from genqueue.client.sync import Client
from genqueue.client.types import Batch, BatchResult, Event, Job, JobPage, OutputInfo

__all__ = [
    "APIError", "AsyncClient", "AsyncFileOutput", "AuthenticationError", "BadRequestError", "Batch", "BatchResult",
    "ChecksumMismatch", "Client", "ConflictError", "Event", "EventStreamError", "FieldError", "FileOutput",
    "GenqueueError", "Job", "JobCanceledError", "JobError", "JobFailedError", "JobPage", "NotFoundError",
    "OutputInfo", "PayloadTooLargeError", "PermissionDeniedError", "RateLimitError", "ServerError",
    "TransportError", "ValidationError", "WaitTimeout",
]
