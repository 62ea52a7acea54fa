"""What `run()` makes of a terminal job: its outputs, or the exception that says why there are none."""

from __future__ import annotations

from genqueue.client.errors import JobCanceledError, JobFailedError
from genqueue.client.types import Job, OutputInfo


def outputs_or_raise(job: Job) -> tuple[OutputInfo, ...]:
    if job.status == "succeeded":
        return job.outputs
    if job.status == "canceled":
        raise JobCanceledError(job)
    raise JobFailedError(job)  # failed (or a status this client does not know: not a success either)
