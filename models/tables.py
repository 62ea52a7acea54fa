"""SQLAlchemy 2.0 typed tables: jobs, their stored outputs, API keys, worker heartbeats, and the callback
outbox (deliveries and their attempts)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from genqueue.models.base import Base, UTCDateTime, utcnow
from genqueue.models.ids import new_id
from genqueue.models.status import JobStatus

# 0007: metadata is JSONB on PostgreSQL so `metadata.<key>=<value>` filters are one containment test
# (`@>`) a GIN index answers; plain JSON elsewhere (SQLite compares json_extract, see models/metafilter.py).
META_JSON = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def _one_of(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))  # submit | ops | admin
    # sha256 of the whole key: keys are 256 random bits, so a fast hash is not brute-forceable.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings to tell keys apart
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # 0005: scheduling. The key's share of the create budget against other keys with queued work, the
    # most predictions it may have running at once, and the most jobs it may have queued (None: no limit).
    weight: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    max_running: Mapped[int | None] = mapped_column(Integer)
    max_queued: Mapped[int | None] = mapped_column(Integer)
    # 0006: the default callback URL of this key's jobs, and its `whsec_...` signing secret, Fernet-sealed
    # with SECRETS_KEY (never stored in the clear; printed once by `keys create`/`rotate-callback-secret`).
    callback_url: Mapped[str | None] = mapped_column(Text)
    callback_secret_sealed: Mapped[str | None] = mapped_column(Text)
    # 0009: how long this key's jobs keep their outputs and inputs (None: GENQUEUE_RETENTION_DAYS), and
    # its spend cap in USD per `spend_period` (day | month, UTC calendar windows; None: no cap).
    retention_days: Mapped[int | None] = mapped_column(Integer)
    spend_limit: Mapped[float | None] = mapped_column(Float)
    spend_period: Mapped[str | None] = mapped_column(String(8))


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    # What to run: exactly one of version / model / deployment is the create target.
    target: Mapped[str] = mapped_column(String(16))  # version | model | deployment
    model: Mapped[str | None] = mapped_column(String(200))
    version: Mapped[str | None] = mapped_column(String(300))
    deployment: Mapped[str | None] = mapped_column(String(200))
    input_public: Mapped[dict[str, Any]] = mapped_column(JSON)
    secret_names: Mapped[list[str]] = mapped_column(JSON, default=list)
    input_sealed: Mapped[str | None] = mapped_column(Text)  # Fernet token of the secret fields
    api_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    priority: Mapped[int] = mapped_column(SmallInteger, default=5, server_default="5")  # 0005: 0-9, higher first
    # Set by a cancel request on a job that is already on Replicate; the cancel task acts on it.
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    # 0006: where to POST the job on its terminal status (and, with callback_on_running, when it runs).
    callback_url: Mapped[str | None] = mapped_column(Text)
    callback_on_running: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    # 0004: the worker (`worker_heartbeats.id`) whose claim is the current one; see models/heartbeats.py.
    claimed_by: Mapped[str | None] = mapped_column(String(64))

    # 0007: the caller's string tags ({"key": "value"}, bounded by intake/metadata.py) and the batch the
    # job came in with its line number there (results are listed in input order by it).
    meta: Mapped[dict[str, str] | None] = mapped_column(META_JSON)
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id"))
    batch_seq: Mapped[int | None] = mapped_column(Integer)

    # 0008: retries. The policy (at most `retry_max_attempts` attempts, retried on the outcomes named in
    # `retry_on`, see models/status.py RETRY_ON), the current attempt's number (1-based), how many more
    # attempts the policy still allows in this run (a replay starts a new run), and the deadline of one
    # attempt in seconds (each attempt gets its own deadline_at). Earlier attempts: job_attempts.
    retry_max_attempts: Mapped[int] = mapped_column(SmallInteger, default=1, server_default="1")
    retry_on: Mapped[list[str] | None] = mapped_column(JSON)
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    retries_left: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    deadline_seconds: Mapped[float | None] = mapped_column(Float)

    # Replicate's side, recorded as soon as the create answers.
    prediction_id: Mapped[str | None] = mapped_column(String(64))
    prediction_status: Mapped[str | None] = mapped_column(String(16))
    prediction_get_url: Mapped[str | None] = mapped_column(Text)
    prediction_cancel_url: Mapped[str | None] = mapped_column(Text)
    prediction_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    prediction_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # Replicate's completed_at
    output_refs: Mapped[list[str] | None] = mapped_column(JSON)  # output URLs/data URIs to copy
    predict_time: Mapped[float | None] = mapped_column(Float)
    total_time: Mapped[float | None] = mapped_column(Float)

    # Our own timeline.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    submit_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # the latest claim for a create
    # Set by a claim, cleared when its create answers (in any way): while it lies ahead, the create may
    # still land at Replicate, so nobody else may reconcile or create.
    create_in_flight_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # Replicate accepted the create
    detected_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # we saw it terminal
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # job terminal
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # When the sweeper should consider the current step lost if nothing touched the row.
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    polls: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # creates sent (should stay 1)
    deliveries: Mapped[int] = mapped_column(Integer, default=0)  # step starts; bounded by max_deliveries

    # Derived timings (seconds), stored so the ops queries aggregate columns, not expressions.
    queue_time: Mapped[float | None] = mapped_column(Float)
    start_time: Mapped[float | None] = mapped_column(Float)
    detection_lag: Mapped[float | None] = mapped_column(Float)
    storage_time: Mapped[float | None] = mapped_column(Float)
    end_to_end_time: Mapped[float | None] = mapped_column(Float)

    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)

    # 0009: when the sweeper deletes the stored outputs and the input (created_at + the job's, else its
    # key's, else the default retention; fixed at submit), and when that (or an erasure request) happened.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outputs_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    # 0008: the finished earlier attempts, loaded with the job wherever the API loads jobs (one SELECT per
    # page); workers never load ORM rows.
    past_attempts: Mapped[list[JobAttempt]] = relationship(
        order_by="JobAttempt.attempt", lazy="selectin", cascade="all, delete-orphan", passive_deletes=True)
    outputs: Mapped[list[JobOutput]] = relationship(
        # Loaded only where shown (API views ask for it): the worker's hot path reads jobs without it.
        back_populates="job", order_by="JobOutput.index", cascade="all, delete-orphan", lazy="select"
    )

    __table_args__ = (
        # 0003: the database refuses a status (or target) the code does not know.
        CheckConstraint(_one_of("status", [s.value for s in JobStatus]), name="ck_jobs_status"),
        CheckConstraint(_one_of("target", ["version", "model", "deployment"]), name="ck_jobs_target"),
        CheckConstraint("priority BETWEEN 0 AND 9", name="ck_jobs_priority"),
        UniqueConstraint("api_key_id", "idempotency_key"),
        Index("ix_jobs_created", "created_at", "id"),
        Index("ix_jobs_status_created", "status", "created_at", "id"),
        Index("ix_jobs_status_check", "status", "next_check_at"),
        Index("ix_jobs_finished", "finished_at"),
        Index("ix_jobs_prediction", "prediction_id"),
        Index("ix_jobs_key_created", "api_key_id", "created_at", "id"),
        Index("ix_jobs_submitted", "submitted_at"),  # 0002: creates-per-minute series in /v1/stats
        # 0007: a batch's counts by status (index-only) and its results in input order.
        Index("ix_jobs_batch_status", "batch_id", "status"),
        Index("ix_jobs_batch_seq", "batch_id", "batch_seq"),
        # 0007: metadata containment on PostgreSQL (jsonb_path_ops: smaller, and `@>` is all we ask).
        Index("ix_jobs_meta", "meta", postgresql_using="gin", postgresql_ops={"meta": "jsonb_path_ops"}),
        Index("ix_jobs_key_status", "api_key_id", "status"),  # 0005: per-key queued/active counts
        # 0009: only rows with something left to delete (see the migration); a key's spend in a window.
        Index("ix_jobs_expiring", "expires_at", postgresql_where=text("outputs_deleted_at IS NULL"),
              sqlite_where=text("outputs_deleted_at IS NULL")),
        Index("ix_jobs_sealed_finished", "finished_at", postgresql_where=text("input_sealed IS NOT NULL"),
              sqlite_where=text("input_sealed IS NOT NULL")),
        Index("ix_jobs_key_finished", "api_key_id", "finished_at"),
    )


class Batch(Base):
    """0007: jobs submitted together. Its status and counts are aggregated from its jobs (by batch_id),
    never kept as counters; only what the jobs cannot tell is stored here."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    api_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"))
    callback_url: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, str] | None] = mapped_column(META_JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Touched by every chunk written: a batch left "accepting" and idle (its API process died mid-body)
    # is sealed by the sweep (models/batches.py:seal_abandoned), so it still finishes and calls back.
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Set when the whole body was read: until then more jobs may still arrive (status "accepting").
    sealed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lines: Mapped[int] = mapped_column(Integer, default=0)  # lines read (written once, at sealing)
    rejected: Mapped[int] = mapped_column(Integer, default=0)  # lines refused (written once, at sealing)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set once, by the compare-and-set that saw every job terminal (the batch callback fires there).
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)  # the body ended early (413, disconnect)

    __table_args__ = (
        Index("ix_batches_key_created", "api_key_id", "created_at", "id"),
        Index("ix_batches_created", "created_at", "id"),
        Index("ix_batches_open", "finished_at", "sealed_at"),
    )


class BatchError(Base):
    """0007: a batch line that was refused, with its reasons: listed in the results at its place."""

    __tablename__ = "batch_errors"

    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    fields: Mapped[list[dict[str, str]]] = mapped_column(JSON)  # [{"field", "reason"}]


class JobAttempt(Base):
    """0008: a finished attempt of a job that was tried again (by its retry policy or a replay), written
    in the transaction that queued the next attempt. The current (last) attempt lives in the jobs row."""

    __tablename__ = "job_attempts"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # how the attempt ended: failed | canceled
    prediction_id: Mapped[str | None] = mapped_column(String(64))
    prediction_status: Mapped[str | None] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    metrics: Mapped[dict[str, float | None]] = mapped_column(JSON)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # its (last) claim for a create
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BulkAction(Base):
    """0008: a bulk retry or cancel (`POST /v1/jobs/bulk`) and its progress, written once per chunk."""

    __tablename__ = "bulk_actions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    api_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"))
    action: Mapped[str] = mapped_column(String(16))  # retry | cancel
    filter: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="running")  # running | done | failed
    matched: Mapped[int] = mapped_column(Integer, default=0)  # jobs the filter matched at the start
    done: Mapped[int] = mapped_column(Integer, default=0)  # jobs retried or canceled (or cancel requested)
    skipped: Mapped[int] = mapped_column(Integer, default=0)  # jobs that had moved on meanwhile
    skipped_secrets_deleted: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_bulk_actions_key_created", "api_key_id", "created_at"),)


class JobOutput(Base):
    __tablename__ = "job_outputs"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(Text)
    storage_uri: Mapped[str] = mapped_column(Text)
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    job: Mapped[Job] = relationship(back_populates="outputs")


class WorkerHeartbeat(Base):
    """0004: one row per running worker process that claims jobs (its main process beats for its pool
    children). Times are seconds since the epoch by the database's clock, never a worker's."""

    __tablename__ = "worker_heartbeats"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    beat_at: Mapped[float] = mapped_column(Float)
    since: Mapped[float] = mapped_column(Float)  # the start of its current unbroken run of beats


class CallbackDelivery(Base):
    """0006: the callback outbox. One row per event to deliver, inserted in the transaction that wrote
    the job's status change, so an event is never lost to a crash between the two. Its `id` is the
    Standard Webhooks `webhook-id` of every attempt; `body` is frozen at the first attempt, so every
    retry carries the same bytes."""

    __tablename__ = "callback_deliveries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # msg_<hex>
    # Whose event it is: a job's (running | terminal), or, 0007, a batch's (batch: every job terminal).
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    api_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"))
    event: Mapped[str] = mapped_column(String(16))  # running | terminal | batch
    url: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # A worker holds the row while its attempt runs; an expired lease is a worker that died mid-attempt.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When the sweeper last sent a delivery message for it (not again for a while: it may be queued).
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    body: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error_code: Mapped[str | None] = mapped_column(String(32))  # callback_failed once given up
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(_one_of("state", ["pending", "delivered", "failed"]), name="ck_callback_deliveries_state"),
        Index("ix_callback_deliveries_job", "job_id"),
        Index("ix_callback_deliveries_batch", "batch_id"),
        Index("ix_callback_deliveries_due", "state", "next_attempt_at"),
    )


class CallbackAttempt(Base):
    """0006: one row per attempt that reached an outcome: when, the HTTP status (None: no answer), how long."""

    __tablename__ = "callback_attempts"

    delivery_id: Mapped[str] = mapped_column(ForeignKey("callback_deliveries.id", ondelete="CASCADE"),
                                             primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(String(200))
