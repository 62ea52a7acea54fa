"""Which workers count as dead (worker/lifecycle/liveness.py): plain values, no database.
Times are seconds by the database's clock; `now` is 1000."""

from __future__ import annotations

from genqueue.models.heartbeats import Beat
from genqueue.worker.lifecycle.liveness import DEAD_AFTER, dead_workers

NOW = 1000.0


def test_a_worker_silent_while_another_beat_throughout_is_dead() -> None:
    beats = [Beat("live", beat_at=NOW - 0.5, since=NOW - 60),
             Beat("gone", beat_at=NOW - DEAD_AFTER - 1, since=NOW - 60)]
    assert dead_workers(beats, NOW) == {"gone"}


def test_a_short_silence_is_not_death() -> None:
    beats = [Beat("live", NOW - 0.5, NOW - 60), Beat("slow", NOW - DEAD_AFTER + 1, NOW - 60)]
    assert dead_workers(beats, NOW) == set()


def test_a_silence_everyone_shares_judges_nobody() -> None:
    """After a database outage every run restarts: nobody witnessed the last DEAD_AFTER seconds."""
    beats = [Beat("a", NOW - 0.2, since=NOW - 0.2), Beat("b", NOW - 20, NOW - 80)]
    assert dead_workers(beats, NOW) == set()
    # ...until a run is DEAD_AFTER old: then a worker that has still not beaten is dead.
    later = NOW + DEAD_AFTER
    beats = [Beat("a", later - 0.2, since=NOW - 0.2), Beat("b", NOW - 20, NOW - 80)]
    assert dead_workers(beats, later) == {"b"}


def test_a_witness_must_be_beating_now() -> None:
    beats = [Beat("stopped", NOW - 10, NOW - 600), Beat("gone", NOW - 30, NOW - 600)]
    assert dead_workers(beats, NOW) == set()


def test_a_lone_restarted_worker_judges_its_dead_predecessor_once_its_run_is_long_enough() -> None:
    predecessor = Beat("old", NOW - 8, NOW - 300)
    assert dead_workers([predecessor, Beat("new", NOW - 0.1, since=NOW - 2)], NOW) == set()
    assert dead_workers([predecessor, Beat("new", NOW - 0.1, since=NOW - DEAD_AFTER)], NOW) == {"old"}
