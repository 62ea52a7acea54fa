"""A batch's status, progress and ETA from its jobs' counts: pure, no database, no clock.

The counts are aggregated from the jobs each time (`models/batches.py`), never kept as counters, so
nothing can drift; this module only says what they mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from genqueue.models.status import TERMINAL_NAMES

ACCEPTING = "accepting"  # the body is still being read: more jobs may come
PROCESSING = "processing"  # some job is not terminal yet
COMPLETED = "completed"  # every job is terminal (whatever each one's outcome)
CANCELED = "canceled"  # a cancel was asked for and every job is terminal


@dataclass(frozen=True)
class BatchProgress:
    status: str
    total: int  # jobs accepted
    done: int  # jobs terminal
    progress: float  # done / total (1.0 for a batch with no job)
    eta_seconds: float | None  # at the rate seen so far; None before the first job finished


def batch_progress(counts: Mapping[str, int], *, sealed: bool, cancel_requested: bool,
                   created_at: datetime, now: datetime) -> BatchProgress:
    total = sum(counts.values())
    done = sum(counts.get(s, 0) for s in TERMINAL_NAMES)
    if not sealed:
        status = ACCEPTING
    elif done < total:
        status = PROCESSING
    else:
        status = CANCELED if cancel_requested else COMPLETED
    progress = done / total if total else 1.0
    eta: float | None = None
    elapsed = (now - created_at).total_seconds()
    if status == PROCESSING and done and elapsed > 0:
        eta = round(elapsed / done * (total - done), 1)
    elif status in (COMPLETED, CANCELED):
        eta = 0.0
    return BatchProgress(status, total, done, round(progress, 4), eta)


def is_terminal(status: str) -> bool:
    return status in (COMPLETED, CANCELED)
