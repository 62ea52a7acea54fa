"""The dispatch order, as pure functions: no Redis, no SQL, no clock (times are passed in).

The rule (README, "Scheduling"):
- A job's effective priority is its priority (0-9, default 5) plus one level per `aging` seconds it
  has waited, capped at 9. The highest effective priority goes first, strictly: an interactive job
  passes any backlog of lower ones, and a low job waits at most (9 - priority) x aging before it
  competes at the top level, so it never waits forever.
- Among the keys with work at that level, the budget is shared by weight (stride scheduling): each
  key has a pass value, the key with the lowest pass goes next and its pass grows by 1/weight. A key
  that had no queued work joins at the lowest pass of the keys that have some, so its first job goes
  within one or two dispatches, never behind another key's backlog.
- Within a key and level, oldest first (FIFO).
- A key at its `max_running` (running predictions plus dispatched ones) is skipped until one ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

MAX_PRIORITY = 9
DEFAULT_PRIORITY = 5
DEFAULT_AGING = 300.0  # seconds of waiting per level of priority gained


@dataclass(frozen=True, slots=True)
class Lane:
    """The queued jobs of one key at one priority, oldest first: its first few (`heads`, as
    (job id, enqueued at in epoch seconds)) and how many it holds in all."""

    priority: int
    key: str
    heads: tuple[tuple[str, float], ...]
    size: int

    @property
    def name(self) -> str:
        return lane_name(self.priority, self.key)


def lane_name(priority: int, key: str) -> str:
    return f"{priority}:{key}"


@dataclass(frozen=True, slots=True)
class KeyRule:
    weight: int = 1
    max_running: int | None = None
    held: bool = False  # its spend cap is reached: its jobs wait in their lanes until the window resets


@dataclass(frozen=True, slots=True)
class Pick:
    lane: Lane
    job_id: str


def effective_priority(priority: int, enqueued_at: float, now: float, aging: float = DEFAULT_AGING) -> int:
    waited = max(0.0, now - enqueued_at)
    return min(MAX_PRIORITY, priority + int(waited // aging))


@dataclass
class Fairness:
    """Stride scheduling state: each key's pass. Lives in the dispatcher's memory; a new dispatcher
    starts with none, which only resets the shares, never the order within a key."""

    passes: dict[str, float] = field(default_factory=dict)

    def join(self, keys: Iterable[str]) -> None:
        """Keys with queued work now: a newcomer (or one back after an idle spell) starts at the
        lowest pass among those already in, so it can neither starve them nor be starved."""
        keys = set(keys)
        for gone in set(self.passes) - keys:
            del self.passes[gone]
        floor = min(self.passes.values(), default=0.0)
        for key in keys:
            self.passes.setdefault(key, floor)

    def charge(self, key: str, weight: int) -> None:
        self.passes[key] = self.passes.get(key, 0.0) + 1.0 / max(1, weight)


def plan(lanes: Iterable[Lane], n: int, now: float, *, rules: Mapping[str, KeyRule], active: Mapping[str, int],
         fairness: Fairness, aging: float = DEFAULT_AGING) -> list[Pick]:
    """Up to `n` jobs to dispatch next, in order. `active`: each key's predictions running or
    dispatched (for `max_running`). `fairness` learns which keys have work; the picks are charged to
    a copy (the dispatcher charges each pick it actually sends)."""
    lanes = [lane for lane in lanes if lane.heads]
    cursor = {lane.name: 0 for lane in lanes}
    counts = dict(active)
    fairness.join({lane.key for lane in lanes})
    sim = Fairness(dict(fairness.passes))
    picks: list[Pick] = []
    while len(picks) < n:
        best: dict[str, tuple[int, float, Lane]] = {}  # key -> (effective priority, enqueued at, lane)
        for lane in lanes:
            i = cursor[lane.name]
            if i >= len(lane.heads):
                continue
            rule = rules.get(lane.key, KeyRule())
            if rule.held or (rule.max_running is not None and counts.get(lane.key, 0) >= rule.max_running):
                continue
            job_at = lane.heads[i][1]
            eff = effective_priority(lane.priority, job_at, now, aging)
            mine = best.get(lane.key)
            if mine is None or (eff, -job_at) > (mine[0], -mine[1]):
                best[lane.key] = (eff, job_at, lane)
        if not best:
            break
        top = max(eff for eff, _, _ in best.values())
        # Lowest pass first; on a tie, the older job.
        key = min((k for k, v in best.items() if v[0] == top),
                  key=lambda k: (sim.passes.get(k, 0.0), best[k][1]))
        lane = best[key][2]
        picks.append(Pick(lane, lane.heads[cursor[lane.name]][0]))
        cursor[lane.name] += 1
        counts[key] = counts.get(key, 0) + 1
        sim.charge(key, rules.get(key, KeyRule()).weight)
    return picks


@dataclass(frozen=True, slots=True)
class Depth:
    """One lane as the position estimate sees it: its size and the effective priority of its head."""

    priority: int
    key: str
    size: int
    head_effective: int


def jobs_ahead(depths: Iterable[Depth], *, priority: int, key: str, rank: int, effective: int,
               rules: Mapping[str, KeyRule]) -> int:
    """An estimate of how many queued jobs go before one at `rank` (0 = next) in its own lane.

    Ahead of it: its own lane's `rank` jobs; every job of other lanes whose head is at a higher
    effective level (ignoring that they age too); and at its own level, each other key's share of
    the dispatches until its turn: `rank + 1` turns of its own key, so `(rank + 1) x w_other / w_own`
    of theirs, at most their size."""
    own_weight = max(1, rules.get(key, KeyRule()).weight)
    turns = rank + 1
    ahead = rank
    for d in depths:
        if d.key == key and d.priority == priority:
            continue
        if d.head_effective > effective:
            ahead += d.size
        elif d.head_effective == effective:
            if d.key == key:
                ahead += d.size  # the same key's older work at this level (it aged into it): FIFO
            else:
                share = turns * max(1, rules.get(d.key, KeyRule()).weight) / own_weight
                ahead += min(d.size, int(share))
    return ahead


def start_delay(ahead: int, rate: float, *, key_running_limit: int | None = None,
                key_ahead: int = 0, expected_duration: float | None = None) -> float | None:
    """Seconds until a job with `ahead` jobs before it gets its create, at `rate` dispatches per
    second; a key held to `max_running` starts at most that many jobs per expected duration. None
    when there is no rate to go by."""
    if rate <= 0:
        return None
    delay = ahead / rate
    if key_running_limit and expected_duration:
        delay = max(delay, key_ahead / (key_running_limit / expected_duration))
    return delay
