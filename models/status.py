"""The job status machine: statuses, the terminal set, allowed transitions, Replicate's statuses.

Pure: no I/O. Every status change in the code base goes through `check_transition` and a
compare-and-set UPDATE (see `models.jobs.transition`).
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"  # accepted and committed; a submit message is (or will be) on the broker
    SUBMITTING = "submitting"  # a worker claimed it and may have sent the create: ambiguous until recorded
    RUNNING = "running"  # Replicate has the prediction (id and urls.get recorded); we poll it
    STORING = "storing"  # the prediction succeeded; outputs are being copied to object storage
    SUCCEEDED = "succeeded"  # every output stored with size and sha256
    FAILED = "failed"  # prediction failed/aborted, input refused, outputs expired, or we gave up
    CANCELED = "canceled"  # canceled by a user (on Replicate too, if it had started)


TERMINAL: frozenset[JobStatus] = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})
# The same as plain strings in a stable order (succeeded, failed, canceled), for SQL and reports.
TERMINAL_NAMES: tuple[str, ...] = tuple(s.value for s in JobStatus if s in TERMINAL)
ACTIVE: frozenset[JobStatus] = frozenset(set(JobStatus) - TERMINAL)

_ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.SUBMITTING, JobStatus.CANCELED, JobStatus.FAILED}),
    # SUBMITTING -> QUEUED: the create surely never reached Replicate (connection refused, 429).
    JobStatus.SUBMITTING: frozenset(
        {JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.STORING, JobStatus.FAILED, JobStatus.CANCELED}
    ),
    # RUNNING -> QUEUED: the job's retry policy (0008) starts a new attempt once its prediction is terminal.
    JobStatus.RUNNING: frozenset({JobStatus.STORING, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.QUEUED}),
    JobStatus.STORING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED}),
    # A succeeded job is final: its prediction was paid for and its outputs are stored.
    JobStatus.SUCCEEDED: frozenset(),
    # FAILED/CANCELED -> QUEUED: a replay (POST /v1/jobs/{id}/retry, bulk retry) makes a new attempt,
    # the finished one recorded in job_attempts in the same transaction (models/attempts.py).
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),
    JobStatus.CANCELED: frozenset({JobStatus.QUEUED}),
}
# The terminal statuses a replay may start again from.
REPLAYABLE: frozenset[JobStatus] = frozenset({JobStatus.FAILED, JobStatus.CANCELED})


class InvalidTransition(ValueError):
    pass


def can_transition(src: JobStatus, dst: JobStatus) -> bool:
    return dst in _ALLOWED[src]


def check_transition(src: JobStatus, dst: JobStatus) -> None:
    if not can_transition(src, dst):
        raise InvalidTransition(f"{src} -> {dst} is not allowed")


# Replicate's own statuses (all six); the last four are terminal.
PREDICTION_STATUSES = ("starting", "processing", "succeeded", "failed", "canceled", "aborted")
PREDICTION_TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})


def job_status_for_prediction(prediction_status: str) -> JobStatus:
    """Where a job goes when its prediction reports this status."""
    if prediction_status == "succeeded":
        return JobStatus.STORING
    if prediction_status in ("failed", "aborted"):
        return JobStatus.FAILED
    if prediction_status == "canceled":
        return JobStatus.CANCELED
    return JobStatus.RUNNING


class ErrorCode(StrEnum):
    """Error codes a failed job can carry (`error.code`)."""

    PREDICTION_FAILED = "prediction_failed"  # the model failed; message is Replicate's error text
    PREDICTION_ABORTED = "prediction_aborted"  # Replicate aborted it before it started
    PREDICTION_CANCELED = "prediction_canceled"  # canceled on Replicate by someone else
    DEADLINE_EXCEEDED = "deadline_exceeded"  # our per-job deadline passed
    INPUT_REJECTED = "input_rejected"  # Replicate answered 4xx to the create (422 invalid input, ...)
    REPLICATE_ERROR = "replicate_error"  # any other permanent answer from Replicate
    OUTPUT_EXPIRED = "output_expired"  # outputs removed after retention (data_removed, 404/403)
    OUTPUT_REFUSED = "output_refused"  # output URL outside OUTPUT_ALLOWED_HOSTS or otherwise refused
    OUTPUT_INVALID = "output_invalid"  # output is not a file reference we can store
    STORAGE_ERROR = "storage_error"  # object storage refused the write
    POISON = "too_many_deliveries"  # the job kept killing or timing out workers
    LOST = "prediction_lost"  # the prediction cannot be found on Replicate any more
    SECRETS = "secrets_unavailable"  # cannot decrypt the job's secret fields (key rotated away)


# 0008: what a job's retry policy (`"retry": {"on": [...]}`) may name, and the error codes each covers.
# Only outcomes after which no prediction of the attempt can still be running are retryable: the next
# attempt's create must never run beside the previous prediction.
RETRY_ON: dict[str, frozenset[ErrorCode]] = {
    "model_error": frozenset({ErrorCode.PREDICTION_FAILED}),  # the model failed (Replicate "failed")
    "aborted": frozenset({ErrorCode.PREDICTION_ABORTED}),  # Replicate aborted it before it started
    "timeout": frozenset({ErrorCode.DEADLINE_EXCEEDED}),  # our per-attempt deadline passed
    "canceled_upstream": frozenset({ErrorCode.PREDICTION_CANCELED}),  # canceled on Replicate by someone else
    "replicate_error": frozenset({ErrorCode.REPLICATE_ERROR}),  # a permanent non-422 refusal of the create
    "output_expired": frozenset({ErrorCode.OUTPUT_EXPIRED}),  # outputs gone before we copied them
}
DEFAULT_RETRY_ON: tuple[str, ...] = ("model_error",)
MAX_ATTEMPTS = 5
