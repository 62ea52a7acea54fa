"""The job as the API, an event and a callback show it: input with secrets masked, timings, outputs.

Never shown: the sealed secrets, key hashes, Replicate's prediction URLs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from genqueue.core.crypto import masked_input
from genqueue.core.pricing import PriceTable, billed_seconds, job_cost
from genqueue.intake.jsoncheck import larger_than
from genqueue.intake.service import AcceptedJob
from genqueue.models.tables import Job

OutputUrl = Callable[[str, int], str]


@dataclass(frozen=True, slots=True)
class Estimate:
    """The scheduler's estimates for one job (`genqueue.api.estimates` computes them)."""

    queue_position: int | None = None
    estimated_start_at: datetime | None = None
    estimated_finish_at: datetime | None = None

# A list page carries inputs up to this size (compact JSON) each: a page of 200 inputs at the input cap
# would weigh 50 MB. The single-job view, and the list with `include=input`, carry every input.
LIST_INPUT_MAX_BYTES = 4096


class Metrics(BaseModel):
    predict_time: float | None = Field(None, description="Seconds of compute on Replicate")
    total_time: float | None = Field(None, description="Replicate's whole prediction duration")
    queue_time: float | None = Field(None, description="Accepted → a worker started the create")
    start_time: float | None = Field(None, description="Prediction created → started on Replicate")
    detection_lag: float | None = Field(None, description="Completed on Replicate → we noticed")
    storage_time: float | None = Field(None, description="Noticed → outputs stored")
    end_to_end_time: float | None = Field(None, description="Accepted → job terminal")


class OutputView(BaseModel):
    index: int
    content_type: str
    size: int
    sha256: str
    storage_uri: str | None = Field(None, description="Where the bytes are stored (ops and admin keys only: "
                                                      "it names the server's bucket or folder)")
    url: str = Field(description="Download URL of the stored bytes (same API key)")


class JobErrorView(BaseModel):
    code: str
    message: str | None


class AttemptView(BaseModel):
    attempt: int = Field(description="1-based")
    status: str = Field(description="The job's status during this attempt; earlier attempts: how they ended")
    prediction_id: str | None
    error: JobErrorView | None
    metrics: Metrics
    started_at: datetime | None = Field(None, description="Its (last) claim for a create")
    finished_at: datetime | None


class JobView(BaseModel):
    id: str
    status: str = Field(description="queued | submitting | running | storing | succeeded | failed | canceled")
    model: str | None
    version: str | None
    deployment: str | None
    input: dict[str, Any] | None = Field(
        description='The input; secret fields (at any depth) are shown as "***". `GET /v1/jobs` leaves out '
                    f'(null, `input_omitted`) inputs over {LIST_INPUT_MAX_BYTES} bytes unless `include=input`'
    )
    input_omitted: bool = Field(False, description="The input was left out of this list page (see `input`)")
    prediction_id: str | None
    prediction_status: str | None
    metrics: Metrics
    outputs: list[OutputView]
    error: JobErrorView | None
    attempts: int = Field(description="Creates sent for the current attempt (stays 1; see attempt_history)")
    attempt: int = Field(1, description="The current attempt's number (retry policy, replays)")
    attempt_history: list[AttemptView] = Field(
        default_factory=list, description="Every attempt, oldest first; the last is the current one, whose "
                                          "metrics are the job's")
    cancel_requested: bool
    created_at: datetime
    submitted_at: datetime | None
    completed_at: datetime | None
    finished_at: datetime | None
    deadline_at: datetime | None
    metadata: dict[str, str] = Field(default_factory=dict, description="Your tags, as given")
    batch_id: str | None = Field(None, description="The batch (`POST /v1/batches`) the job came in")
    priority: int = Field(5, description="0-9, higher first")
    queue_position: int | None = Field(None, description="Queued jobs only: jobs ahead of it in dispatch order "
                                                         "(an estimate; see Scheduling in the README)")
    estimated_start_at: datetime | None = Field(None, description="Queued jobs only: when its create is expected")
    estimated_finish_at: datetime | None = Field(None, description="Running jobs only: when predictions of its "
                                                                   "model usually end")
    cost: float | None = Field(None, description="USD: its predict_time and stored outputs at the model's price "
                                                 "(GENQUEUE_PRICE_TABLE); 0 until it ran")
    expires_at: datetime | None = Field(None, description="When its stored outputs and input are deleted (retention)")
    outputs_deleted_at: datetime | None = Field(None, description="When they were deleted (retention or "
                                                                  "`DELETE .../outputs`); its outputs then answer 410")


class JobBatchView(BaseModel):
    jobs: list[JobView]


class JobPage(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null at the end")


def job_view(job: Job, output_url: OutputUrl, *, input_limit: int | None = None,
             show_storage: bool = False, estimate: Estimate | None = None,
             prices: PriceTable | None = None) -> JobView:
    """`input_limit`: leave out an input larger than this many bytes (list pages). `show_storage`:
    include each output's storage URI (ops/admin callers)."""
    public = job.input_public or {}
    metrics = Metrics(
        predict_time=job.predict_time, total_time=job.total_time, queue_time=job.queue_time,
        start_time=job.start_time, detection_lag=job.detection_lag, storage_time=job.storage_time,
        end_to_end_time=job.end_to_end_time,
    )
    error = JobErrorView(code=job.error_code, message=job.error_message) if job.error_code else None
    omitted = input_limit is not None and larger_than(public, input_limit)
    return JobView(
        id=job.id,
        status=job.status,
        model=job.model,
        version=job.version,
        deployment=job.deployment,
        input=None if omitted else masked_input(public, list(job.secret_names or [])),
        input_omitted=omitted,
        prediction_id=job.prediction_id,
        prediction_status=job.prediction_status,
        metrics=metrics,
        outputs=[
            OutputView(index=o.index, content_type=o.content_type, size=o.size, sha256=o.sha256,
                       storage_uri=o.storage_uri if show_storage else None, url=output_url(job.id, o.index))
            for o in job.outputs
        ],
        error=error,
        attempts=job.attempts or 0,
        attempt=job.attempt or 1,
        attempt_history=[
            *(AttemptView(attempt=a.attempt, status=a.status, prediction_id=a.prediction_id,
                          error=JobErrorView(code=a.error_code, message=a.error_message) if a.error_code else None,
                          metrics=Metrics(**(a.metrics or {})), started_at=a.started_at, finished_at=a.finished_at)
              for a in job.past_attempts),
            AttemptView(attempt=job.attempt or 1, status=job.status, prediction_id=job.prediction_id, error=error,
                        metrics=metrics, started_at=job.submit_started_at, finished_at=job.finished_at),
        ],
        cancel_requested=job.cancel_requested_at is not None,
        created_at=job.created_at,
        submitted_at=job.submitted_at,
        completed_at=job.completed_at,
        finished_at=job.finished_at,
        deadline_at=job.deadline_at,
        metadata=job.meta or {},
        batch_id=job.batch_id,
        priority=job.priority,
        queue_position=estimate.queue_position if estimate else None,
        estimated_start_at=estimate.estimated_start_at if estimate else None,
        estimated_finish_at=estimate.estimated_finish_at if estimate else None,
        cost=None if prices is None else job_cost(
            prices.price(job.model or job.deployment), job.predict_time, len(job.outputs),
            aborted=job.prediction_status == "aborted",
            earlier_seconds=sum(billed_seconds((a.metrics or {}).get("predict_time"), a.prediction_status)
                                for a in job.past_attempts)),
        expires_at=job.expires_at,
        outputs_deleted_at=job.outputs_deleted_at,
    )


def accepted_view(job: AcceptedJob) -> JobView:
    """A job intake has just recorded, without reading it back: queued, nothing run or stored yet."""
    return JobView(
        id=job.id,
        status=job.status,
        model=job.model,
        version=job.version,
        deployment=job.deployment,
        input=masked_input(job.input_public, job.secret_names),
        prediction_id=None,
        prediction_status=None,
        metrics=Metrics(),
        outputs=[],
        error=None,
        attempts=0,
        attempt_history=[AttemptView(attempt=1, status=job.status, prediction_id=None, error=None, metrics=Metrics(),
                                     finished_at=None)],
        cancel_requested=False,
        created_at=job.created_at,
        submitted_at=None,
        completed_at=None,
        finished_at=None,
        deadline_at=job.deadline_at,
        metadata=job.meta or {},
        priority=job.priority,
        cost=0.0,
        expires_at=job.expires_at,
    )
