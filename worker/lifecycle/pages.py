"""Which reads the page reader makes (webhooks off): pure, so the choice is unit-tested with numbers.

Replicate lists predictions 100 a page, newest first, filtered by creation time. Predictions created
close together finish close together, so one page over a creation-time window can detect up to 100
finishes for one read, where a GET per prediction would cost 100. A prediction becomes *due* at its
model's observed usual finish (created + expected); due predictions are grouped, oldest first, into
windows that hold at most a page of the predictions we know exist there; a window with several due
predictions is one page read, a lone one is one GET (same cost, a smaller answer, no window to guess).

Nothing here reads a clock, Redis or SQL: the reader (`worker/pages.py`) passes what it knows, and
what a read saw (`seen_at`, when a read last saw the prediction still running) decides backoff:
- a prediction running past its expected finish (a straggler) is read again after half of how late
  it already is (0.5 s to 30 s), so a straggler costs a few reads in total, not one every tick;
- with no observed duration yet (a model's first predictions) nothing is known but the order: the
  oldest running prediction of the model (the one that should finish first) is read every second as a
  sentinel, with its window-mates; the others back off by their age (1 s, 2 s, 4 s ... 30 s). The first
  finish seen gives the model its duration, and the rest are then read at their expected finish.
- a sparse window (fewer than DENSE due) waits until it has been due HOLD seconds, to gather more;
- the caller caps the reads of one tick (a share of the read budget), and the densest windows go first.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

PAGE_SIZE = 100  # Replicate's list page
FIRST_LOOK = 1.0  # seconds after creation, for a prediction of a model with no observed duration
SENTINEL_GAP = 1.0  # the oldest prediction of such a model is read this often
MIN_GAP = 0.3  # a straggler is read again at least this long after it was last seen running
MAX_GAP = 30.0  # ... and at most this long
STRAGGLER_BACKOFF = 0.5  # ... or after this share of how late it already is
UNKNOWN_BACKOFF = 1.0  # a prediction of a model with no observed duration: this share of its age
# A window with fewer due predictions than DENSE waits until its oldest has been due HOLD seconds, so
# predictions finishing a few a second share a read (lag ~HOLD/2 more) instead of costing one each tick.
DENSE = 20
HOLD = 0.25
EDGE = 0.001
SLACK = 10  # seconds added on each side of a window: the list filters are exclusive


@dataclass(frozen=True, slots=True)
class Tracked:
    """A running prediction as the reader knows it. Times are seconds since the epoch."""

    job_id: str
    created: float  # the prediction's created_at (Replicate's clock)
    model: str | None
    expected: float | None  # the model's observed usual duration, if any
    seen_at: float | None = None  # when a read last saw it still running


class Kind(StrEnum):
    PAGE = "page"
    GET = "get"


@dataclass(frozen=True, slots=True)
class Read:
    """One read: a list page over (after, before), or a GET of the one job's prediction."""

    kind: Kind
    job_ids: tuple[str, ...]  # the due predictions it is for
    after: float
    before: float


def due_at(t: Tracked, *, sentinel: bool = False) -> float:
    """When `t` should next be looked at."""
    if t.expected is not None:
        target = t.created + t.expected
        if t.seen_at is None or t.seen_at < target:
            return target
        late = t.seen_at - target
        return t.seen_at + min(MAX_GAP, max(MIN_GAP, late * STRAGGLER_BACKOFF))
    if t.seen_at is None:
        return t.created + FIRST_LOOK
    if sentinel:
        return t.seen_at + SENTINEL_GAP
    return t.seen_at + min(MAX_GAP, max(FIRST_LOOK, (t.seen_at - t.created) * UNKNOWN_BACKOFF))


def sentinels(tracked: Sequence[Tracked]) -> set[str]:
    """Job ids of the oldest running prediction of each model that has no observed duration."""
    oldest: dict[str | None, Tracked] = {}
    for t in tracked:
        if t.expected is None and (t.model not in oldest or t.created < oldest[t.model].created):
            oldest[t.model] = t
    return {t.job_id for t in oldest.values()}


def windows(due: Sequence[Tracked], known: Sequence[float], page: int = PAGE_SIZE) -> list[list[Tracked]]:
    """Group due predictions (any order) into creation-time windows, oldest first, each spanning at
    most `page` of the `known` predictions (sorted creation times of every prediction we know of
    there, running or recently finished: a page lists them all, not only the due ones)."""
    out: list[list[Tracked]] = []
    for t in sorted(due, key=lambda x: x.created):
        if out:
            first = out[-1][0].created
            span = bisect.bisect_right(known, t.created) - bisect.bisect_left(known, first)
            if span <= page:
                out[-1].append(t)
                continue
        out.append([t])
    return out


def plan(tracked: Sequence[Tracked], known: Sequence[float], now: float, max_reads: int) -> list[Read]:
    """The reads to make now, at most `max_reads`, the windows with the most due predictions first
    (then the longest due). `known`: sorted creation times (see `windows`)."""
    if max_reads <= 0:
        return []
    watch = sentinels(tracked)
    due = [t for t in tracked if due_at(t, sentinel=t.job_id in watch) <= now]
    groups = [g for g in windows(due, known)
              if len(g) >= DENSE or min(due_at(t, sentinel=t.job_id in watch) for t in g) <= now - HOLD]
    groups.sort(key=lambda g: (-len(g), min(due_at(t, sentinel=t.job_id in watch) for t in g)))
    return [_read(g, known, watch) for g in groups[:max_reads]]


def _read(group: list[Tracked], known: Sequence[float], watch: set[str]) -> Read:
    """A lone due prediction is one GET; otherwise (or for a sentinel, whose newer neighbours are the
    next to finish) a page, widened to a full page of known predictions: the same one read then also
    sees the window's neighbours, which may have finished early."""
    ids = tuple(t.job_id for t in group)
    first, last = group[0].created, group[-1].created
    if len(group) == 1 and ids[0] not in watch:
        return Read(Kind.GET, ids, first - EDGE, last + EDGE)
    # Up to SLACK short of a full page: predictions we don't know of (another client's) would push
    # the oldest, our first target, onto a second page (the list is newest first).
    i = bisect.bisect_left(known, first)
    wide = known[min(len(known) - 1, i + PAGE_SIZE - 1 - SLACK)] if known else last
    return Read(Kind.PAGE, ids, first - EDGE, max(last + EDGE, wide))  # `before` is exclusive


def reads_per_tick(read_per_min: float, share: float, tick: float) -> int:
    """The most reads one tick may make: `share` of the fleet's read budget (polls, cancels and
    lookups need the rest), at least one."""
    return max(1, int(read_per_min / 60.0 * share * tick))
