"""Which workers are dead: the rule that lets a create in flight in a dead worker be looked up at once
(the beats and why: `genqueue.models.heartbeats`)."""

from __future__ import annotations

from collections.abc import Iterable

from genqueue.models.heartbeats import BEAT_EVERY, Beat

# Silent this long while another worker beat throughout: dead, or cut off from the database, in which
# case its create, sent at least this long ago, has landed at Replicate or never will.
DEAD_AFTER = 5.0


def dead_workers(beats: Iterable[Beat], now: float) -> set[str]:
    """Workers silent for DEAD_AFTER while another beat without a break for all of it (so the database
    was reachable the whole time: a silence everyone shares, a database outage, judges nobody).
    `now` is the database's clock, like the beats."""
    beats = list(beats)
    witnessed = any(b.since <= now - DEAD_AFTER and b.beat_at >= now - 2 * BEAT_EVERY for b in beats)
    if not witnessed:
        return set()
    return {b.worker_id for b in beats if b.beat_at < now - DEAD_AFTER}
