"""How a running prediction is followed, chosen once at start-up, and the policy decisions use.

`Polling`: every look schedules the next one as a delayed message. `Paged` (the default without
webhooks): the same, but the page reader (`worker/pages.py`) does the looking and the poll messages
are its safety net. `Webhooks`: Replicate pushes the
finished prediction; polls are only a safety net that the sweeper sends when `next_check_at` passes,
so no delayed message per running job sits in the broker. The strategy owns what differs between the
two (the create's webhook arguments, the next check time, whether a poll message follows a look,
whether outputs are copied inline); nothing else in the worker asks which mode is on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

# The poll schedule. The first look is just after the model's observed usual finish (5% late on
# purpose: one GET just after the finish beats two around it); without an observation, or once a
# prediction runs long, looks start after 1 s and grow x1.25 up to 30 s.
FIRST_POLL = 1.0
POLL_GROWTH = 1.25
MAX_POLL_DELAY = 30.0
# With webhooks: a push that never arrives is noticed within about this long. Replicate retries a
# failed delivery for about a minute, so sooner would mostly poll for pushes still on their way.
SAFETY_POLL = 90.0


def poll_delay(*, status: str | None, created_at: datetime | None, polls: int, expected: float | None,
               now: datetime) -> float:
    """Seconds until the next look at a prediction that is not finished yet."""
    if expected is not None and created_at is not None:
        remaining = expected * 1.05 - (now - created_at).total_seconds()
        if remaining > 0.1:
            return min(MAX_POLL_DELAY, remaining + 0.05)
    if status == "starting":  # still waiting for hardware: no point backing off yet
        return FIRST_POLL
    return min(MAX_POLL_DELAY, FIRST_POLL * POLL_GROWTH ** min(polls, 20))


class FollowStrategy(Protocol):
    @property
    def sends_polls(self) -> bool:
        """Whether each look is followed by a delayed poll message (else the sweeper sends the poll
        once next_check_at passes)."""
        ...

    @property
    def reads_pages(self) -> bool:
        """Whether the page reader (worker.pages) runs: it detects finishes by list pages."""
        ...

    @property
    def store_inline(self) -> bool:
        """Whether a step that sees a prediction succeed copies its outputs itself."""
        ...

    def create_args(self, job_id: str) -> dict[str, Any]:
        """Extra arguments of the create call (a webhook)."""
        ...

    def next_check(self, *, status: str | None, created_at: datetime | None, polls: int,
                   expected: float | None, now: datetime) -> float:
        """Seconds until the job's next look."""
        ...


@dataclass(frozen=True, slots=True)
class Polling:
    sends_polls: bool = True
    reads_pages: bool = False
    # Copying right here saves one broker round trip per job, and the files are fetched as soon as
    # they exist; a crash leaves the job `storing`, which the sweeper re-sends like any step.
    store_inline: bool = True

    def create_args(self, job_id: str) -> dict[str, Any]:
        return {}

    def next_check(self, *, status: str | None, created_at: datetime | None, polls: int,
                   expected: float | None, now: datetime) -> float:
        return poll_delay(status=status, created_at=created_at, polls=polls, expected=expected, now=now)


# With the page reader (webhooks off, `worker/pages.py`): it reads each prediction's list page at its
# expected finish, so the poll message is its safety net, this long after that finish (at least 5 s,
# a quarter of the duration for long ones): a reader that is down or short of budget costs lag, and
# the reader's own reads are not doubled by GETs. With no observed duration the first look is
# SAFETY_POLL after the create, then every MAX_POLL_DELAY (the reader follows stragglers meanwhile).
PAGE_GRACE = 5.0
PAGE_GRACE_SHARE = 0.25
# Below the worker's longest countdown (worker.celery_app.MAX_COUNTDOWN, 300 s), so the message and
# next_check_at stay equal even for long predictions.
PAGED_MAX_DELAY = 240.0


def paged_delay(*, created_at: datetime | None, polls: int, expected: float | None, now: datetime) -> float:
    """Seconds until the safety-net poll of a prediction the page reader follows."""
    if expected is not None and created_at is not None:
        remaining = expected * 1.05 - (now - created_at).total_seconds()
        if remaining > 0.1:
            return min(PAGED_MAX_DELAY, remaining + max(PAGE_GRACE, expected * PAGE_GRACE_SHARE))
    if expected is None and polls == 0:
        return SAFETY_POLL
    return MAX_POLL_DELAY


@dataclass(frozen=True, slots=True)
class Paged:
    """Polling whose poll messages are the safety net of the page reader (webhooks off)."""

    sends_polls: bool = True
    reads_pages: bool = True
    # A page reports up to 100 finishes at once, like a burst of webhooks: copies go to the store
    # queue so that recording "finished" never waits behind the previous one's downloads.
    store_inline: bool = False

    def create_args(self, job_id: str) -> dict[str, Any]:
        return {}

    def next_check(self, *, status: str | None, created_at: datetime | None, polls: int,
                   expected: float | None, now: datetime) -> float:
        return paged_delay(created_at=created_at, polls=polls, expected=expected, now=now)


@dataclass(frozen=True, slots=True)
class Webhooks:
    base_url: str
    sends_polls: bool = False
    reads_pages: bool = False
    # Pushes arrive in bursts: recording "finished" must not wait behind the previous push's
    # downloads (W2: detection lag p50 8.7 s with copies inline), so copies go to the store queue.
    store_inline: bool = False

    def create_args(self, job_id: str) -> dict[str, Any]:
        # Only the terminal event: the others would be requests we don't need.
        return {"webhook": f"{self.base_url}/v1/replicate/webhook?job={job_id}",
                "webhook_events_filter": ["completed"]}

    def next_check(self, *, status: str | None, created_at: datetime | None, polls: int,
                   expected: float | None, now: datetime) -> float:
        delay = poll_delay(status=status, created_at=created_at, polls=polls, expected=expected, now=now)
        return max(delay, SAFETY_POLL)


@dataclass(frozen=True, slots=True)
class Policy:
    follow: FollowStrategy
    # Longest a create call can be in flight (read timeout + Prefer: wait + margin): until then an
    # unanswered create may still land, so nobody reconciles or creates again.
    create_window: timedelta
    # Prefer: wait on creates of models observed to finish within this many seconds (0: never). The
    # create then usually returns the finished prediction and needs no poll, but it holds a worker
    # slot that long: only a threads-pool worker turns it on.
    create_wait_max: float = 0.0

    def create_wait(self, expected: float | None) -> int | None:
        """Seconds of `Prefer: wait` for a create of a model expected to take `expected` seconds."""
        if not self.create_wait_max or expected is None or expected > self.create_wait_max:
            return None
        return min(60, math.ceil(expected * 1.2) + 1)
