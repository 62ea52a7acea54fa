"""SQLAlchemy 2.0 typed tables: jobs, their stored outputs, and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from genqueue.models.base import Base, UTCDateTime, utcnow
from genqueue.models.ids import new_id
from genqueue.models.status import JobStatus


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

    # 0004: the worker (`worker_heartbeats.id`) whose claim is the current one; see models/heartbeats.py.
    claimed_by: Mapped[str | None] = mapped_column(String(64))

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
        Index("ix_jobs_key_status", "api_key_id", "status"),  # 0005: per-key queued/active counts
    )


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
