"""The shape of a job request (HTTP body, JSONL line, Python call): target + input + options."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from genqueue.models.status import MAX_ATTEMPTS, RETRY_ON

RetryOn = Literal["model_error", "aborted", "timeout", "canceled_upstream", "replicate_error", "output_expired"]

VERSION_RE = re.compile(r"^(?:[a-z0-9][a-z0-9_.-]*/[a-z0-9][a-z0-9_.-]*:)?[0-9a-f]{64}$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*/[a-z0-9][a-z0-9_.-]*$")


def _default_on() -> list[RetryOn]:
    return ["model_error"]


class RetryPolicy(BaseModel):
    """0008: how many attempts a job may take and after which outcomes it is tried again. Each attempt
    is a new, billed prediction, started only after the previous one is over."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(1, ge=1, le=MAX_ATTEMPTS, description=f"1-{MAX_ATTEMPTS} attempts in all (default 1)")
    on: list[RetryOn] = Field(
        default_factory=_default_on, min_length=1, max_length=len(RETRY_ON),
        description="Outcomes that are tried again: " + ", ".join(RETRY_ON) + " (default: model_error)")
    # DEFAULT_RETRY_ON in models/status.py says the same for rows; the Literal keeps the schema exact.


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(None, description='"owner/name:<64 hex>" or "<64 hex>"', max_length=300)
    model: str | None = Field(None, description='"owner/name" of an official model', max_length=200)
    deployment: str | None = Field(None, description='"owner/name" of your deployment', max_length=200)
    input: dict[str, Any] = Field(..., description="The model's input; secret fields are sealed at rest")
    priority: int = Field(5, ge=0, le=9, description="0-9, higher first (default 5); see Scheduling in the README")
    deadline_seconds: float | None = Field(
        None, ge=5, le=86400, description="Give up (and cancel on Replicate) after this long; sent as Cancel-After"
    )
    metadata: dict[str, Any] | None = Field(
        None, description="Your tags: at most 16 keys of at most 64 characters, string values of at most 512; "
                          "returned with the job, filterable with `metadata.<key>=<value>`"
    )

    retry: RetryPolicy | None = Field(None, description="Retry policy; default: one attempt, never re-run")
    retention_days: int | None = Field(
        None, ge=0, le=36500,
        description="Delete the stored outputs and the input this many days after creation "
                    "(default: the key's, else GENQUEUE_RETENTION_DAYS; 0: as soon as the job ends)")
    callback_url: str | None = Field(
        None, max_length=2000,
        description="POST the job here (signed, Standard Webhooks) on its terminal status; default: the key's")
    callback_events: list[Literal["running", "terminal"]] | None = Field(
        None, min_length=1, max_length=2,
        description='["running", "terminal"] also posts when the job starts running; "terminal" is required')

    @model_validator(mode="after")
    def _one_target(self) -> JobRequest:
        given = [n for n in ("version", "model", "deployment") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError("exactly one of version, model or deployment is required")
        if self.version and not VERSION_RE.match(self.version):
            raise ValueError('version must be "owner/name:<64 hex>" or "<64 hex>" ("latest" is not valid)')
        for name in ("model", "deployment"):
            value = getattr(self, name)
            if value and not NAME_RE.match(value):
                raise ValueError(f'{name} must be "owner/name"')
        return self

    @property
    def target(self) -> str:
        return "version" if self.version else "model" if self.model else "deployment"

    @property
    def model_name(self) -> str | None:
        """owner/name when we can tell it (for per-model validation and stats)."""
        if self.version and ":" in self.version:
            return self.version.split(":", 1)[0]
        return self.model or self.deployment
