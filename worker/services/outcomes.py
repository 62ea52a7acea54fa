"""What a service tells its task: done, or run again later (the task layer owns rescheduling)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from genqueue.core.settings import Settings


@dataclass(frozen=True)
class Next:
    """Follow-up work for the task layer to enqueue after the service committed."""

    task: str | None = None  # "poll" | "store" | "submit" | None (nothing further)
    countdown: float = 0.0
    # For "store": the job as just committed (status storing, output_refs set), so the outputs can be
    # copied right away without reading the row again.
    job: Any = None


DONE = Next()


class RetryLater(Exception):
    """The step could not run now (rate limit, transient error); run the same step again later."""

    def __init__(self, delay: float, reason: str) -> None:
        super().__init__(reason)
        self.delay = delay
        self.reason = reason


def backoff(attempt: int, *, base: float = 1.0, cap: float = 60.0) -> float:
    """Exponential back-off with full jitter, so a fleet of workers doesn't retry in lock-step."""
    import random

    return random.uniform(base / 2, min(cap, base * 2 ** max(0, attempt)))


def with_webhooks(settings: Settings, delay: float) -> float:
    """With webhooks on, the push normally finishes a job: polls are a safety net, spaced by
    GENQUEUE_WEBHOOK_POLL_INTERVAL (a missed push is noticed within about that long)."""
    return max(delay, settings.webhook_poll_interval) if settings.webhook_url else delay
