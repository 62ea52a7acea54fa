"""When a failed callback is tried again, and when it is given up. Pure: the time, the attempt number
and the jitter are arguments, so the whole 24 h schedule is unit-tested without waiting.

The delay doubles from `first` up to `cap`, with +-20 % jitter so a receiver coming back is not hit by
every pending delivery in the same second. An attempt that fails while the delivery is younger than
`give_up_after` is retried; the first failure past that horizon gives up (`callback_failed`), so a
receiver is retried for at least `give_up_after` (24 h) after the event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

GIVE_UP_AFTER = timedelta(hours=24)
JITTER = 0.2


@dataclass(frozen=True, slots=True)
class Backoff:
    first: float = 5.0  # seconds before the second attempt
    cap: float = 3600.0  # longest wait between two attempts
    give_up_after: timedelta = GIVE_UP_AFTER

    def delay(self, attempt: int, jitter: float = 0.5) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based); `jitter` in [0, 1)
        (0.5: none)."""
        base = min(self.cap, self.first * 2.0 ** min(max(attempt - 1, 0), 60))
        return base * (1.0 - JITTER + 2 * JITTER * jitter)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to write after an attempt: delivered, retry at `retry_at`, or given up."""

    state: str  # delivered | pending | failed
    retry_at: datetime | None = None
    error_code: str | None = None


DELIVERED = Outcome("delivered")
CALLBACK_FAILED = "callback_failed"


def accepted(status_code: int | None) -> bool:
    """Only a 2xx answer is a delivery; redirects are not followed (the URL was checked, not its target)."""
    return status_code is not None and 200 <= status_code < 300


def after_attempt(status_code: int | None, attempt: int, created_at: datetime, now: datetime,
                  backoff: Backoff, jitter: float = 0.5) -> Outcome:
    """The outcome of attempt number `attempt` of a delivery created at `created_at`, which answered
    `status_code` (None: no answer, a refused address or a network error) at `now`."""
    if accepted(status_code):
        return DELIVERED
    if now - created_at >= backoff.give_up_after:
        return Outcome("failed", error_code=CALLBACK_FAILED)
    return Outcome("pending", retry_at=now + timedelta(seconds=backoff.delay(attempt, jitter)))
