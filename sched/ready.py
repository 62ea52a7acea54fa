"""Queued jobs waiting for a create, kept in Redis: one sorted set ("lane") per priority and API key.

Producers add a job to its lane when they commit it (`add`); the dispatcher reads the heads of
every lane (`lanes`), chooses by `genqueue.sched.plan`, and `take`s its picks: each leaves its lane
and enters the in-flight set in one atomic step, before its submit message is sent; the submit step
`release`s it once its claim is committed. So at every moment a queued job is in its lane, in flight,
or claimed in SQL, and the dispatcher's death between any two of these steps loses nothing: an
in-flight entry that nobody released is found stale and checked against SQL (`stale`, `requeue`).

SQL stays the truth. A lane entry is a hint: `requeue` adds jobs only where they are in neither place
(the sweeper's audit of queued jobs, a lost in-flight entry), and the epoch key tells the dispatcher
that Redis lost everything (FLUSHDB, a restart without persistence) so that it rebuilds the lanes
from SQL at once instead of waiting for the audit.

Why sorted sets, not lists: re-adding a job that is already there is a no-op (ZADD NX), so the audit
and the rebuild are idempotent; the score (the job's creation time) keeps FIFO order however late a
job is re-added; and ZRANK answers a job's place in its lane for the queue position.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis

from genqueue.sched.plan import Lane, Pick, lane_name

PREFIX = "gq:sched"
NO_KEY = "-"  # the lane key of jobs submitted without an API key (the CLI, the Python function)

# KEYS[1] the lane index, KEYS[2] in-flight. ARGV: now, then (lane name, job id, key) triples.
# Returns the job ids taken (those still in their lane: a job taken twice is taken once).
_TAKE = """
local taken = {}
for i = 2, #ARGV, 3 do
  local lane = ARGV[i]; local job = ARGV[i + 1]
  local zkey = KEYS[1] .. ':' .. lane
  if redis.call('ZREM', zkey, job) == 1 then
    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[i + 2] .. '|' .. job)
    taken[#taken + 1] = job
  end
  if redis.call('ZCARD', zkey) == 0 then redis.call('SREM', KEYS[1], lane) end
end
return taken
"""

# KEYS[1] the lane index, KEYS[2] in-flight. ARGV: (lane name, job id, key, score) quadruples.
# Adds each job to its lane unless it is in flight. Returns how many were added.
_REQUEUE = """
local added = 0
for i = 1, #ARGV, 4 do
  local lane = ARGV[i]; local job = ARGV[i + 1]
  if not redis.call('ZSCORE', KEYS[2], ARGV[i + 2] .. '|' .. job) then
    added = added + redis.call('ZADD', KEYS[1] .. ':' .. lane, 'NX', ARGV[i + 3], job)
    redis.call('SADD', KEYS[1], lane)
  end
end
return added
"""

# KEYS[1] the lane index; ARGV the lane names to look at. Drops empty lanes from the index (atomic
# with `add`, which writes lane then index in one MULTI, so a lane is never dropped while non-empty).
_PRUNE = """
for i = 1, #ARGV do
  if redis.call('ZCARD', KEYS[1] .. ':' .. ARGV[i]) == 0 then redis.call('SREM', KEYS[1], ARGV[i]) end
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Entry:
    """A queued job as its lane knows it."""

    job_id: str
    priority: int
    key: str
    enqueued_at: float  # epoch seconds: the job's creation time (FIFO within a lane)

    @property
    def lane(self) -> str:
        return lane_name(self.priority, self.key)


def entry(job_id: str, priority: int | None, api_key_id: str | None, created_at: float) -> Entry:
    return Entry(job_id, 5 if priority is None else priority, api_key_id or NO_KEY, created_at)


class ReadyQueues:
    def __init__(self, client: redis.Redis, prefix: str = PREFIX) -> None:
        self._redis = client
        self.index = f"{prefix}:lanes"
        self.inflight = f"{prefix}:inflight"
        self.wake_key = f"{prefix}:wake"
        self.epoch_key = f"{prefix}:epoch"
        self._take = client.register_script(_TAKE)
        self._requeue = client.register_script(_REQUEUE)
        self._prune = client.register_script(_PRUNE)

    def _zkey(self, lane: str) -> str:
        return f"{self.index}:{lane}"

    # --- producers ------------------------------------------------------------------------------
    def add(self, entries: Sequence[Entry]) -> None:
        """New jobs, in one round trip; wakes an idle dispatcher."""
        if not entries:
            return
        pipe = self._redis.pipeline(transaction=True)
        for e in entries:
            pipe.zadd(self._zkey(e.lane), {e.job_id: e.enqueued_at}, nx=True)
        pipe.sadd(self.index, *{e.lane for e in entries})
        pipe.rpush(self.wake_key, "1")
        pipe.ltrim(self.wake_key, 0, 0)
        pipe.execute()

    def remove(self, e: Entry) -> None:
        """A queued job canceled before its dispatch: its lane place would otherwise cost a create token."""
        self._redis.zrem(self._zkey(e.lane), e.job_id)

    def remove_many(self, entries: Sequence[Entry]) -> None:
        """The same for many jobs (a bulk cancel), in one round trip."""
        if not entries:
            return
        pipe = self._redis.pipeline(transaction=False)
        for e in entries:
            pipe.zrem(self._zkey(e.lane), e.job_id)
        pipe.execute()

    # --- the dispatcher --------------------------------------------------------------------------
    def lanes(self, heads: int) -> list[Lane]:
        """Every non-empty lane with its first `heads` jobs."""
        names = sorted(n.decode() if isinstance(n, bytes) else n for n in self._redis.smembers(self.index))
        if not names:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.zrange(self._zkey(name), 0, heads - 1, withscores=True)
            pipe.zcard(self._zkey(name))
        raw = pipe.execute()
        out: list[Lane] = []
        empty: list[str] = []
        for i, name in enumerate(names):
            members, size = raw[2 * i], int(raw[2 * i + 1])
            if not size:
                empty.append(name)
                continue
            priority, key = name.split(":", 1)
            out.append(Lane(int(priority), key, tuple((_s(m), float(s)) for m, s in members), size))
        if empty:
            self._prune(keys=[self.index], args=empty)
        return out

    def take(self, picks: Sequence[Pick], now: float | None = None) -> list[str]:
        """Move the picks from their lanes to in-flight, atomically; the job ids actually taken."""
        if not picks:
            return []
        args: list[str | float] = [now if now is not None else time.time()]
        for p in picks:
            args += [p.lane.name, p.job_id, p.lane.key]
        return [_s(j) for j in self._take(keys=[self.index, self.inflight], args=args)]

    def wait_for_work(self, timeout: float) -> None:
        """Block until a producer adds jobs, or `timeout` seconds."""
        self._redis.blpop([self.wake_key], timeout=max(1, int(timeout)))

    def inflight_by_key(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for member in self._redis.zrange(self.inflight, 0, -1):
            key = _s(member).rsplit("|", 1)[0]
            counts[key] = counts.get(key, 0) + 1
        return counts

    def stale(self, older_than: float, now: float | None = None) -> list[tuple[str, str]]:
        """In-flight entries nobody released for `older_than` seconds: (key, job id)."""
        cutoff = (now if now is not None else time.time()) - older_than
        members = self._redis.zrangebyscore(self.inflight, "-inf", cutoff)
        return [tuple(_s(m).rsplit("|", 1)) for m in members]  # type: ignore[misc]

    def forget(self, pairs: Iterable[tuple[str, str]]) -> None:
        members = [f"{key}|{job_id}" for key, job_id in pairs]
        if members:
            self._redis.zrem(self.inflight, *members)

    # --- the submit step ---------------------------------------------------------------------------
    def release(self, api_key_id: str | None, job_id: str) -> None:
        """The dispatched job's claim is committed (or it needs no create): no longer in flight."""
        self._redis.zrem(self.inflight, f"{api_key_id or NO_KEY}|{job_id}")

    # --- audits ---------------------------------------------------------------------------------------
    def requeue(self, entries: Sequence[Entry]) -> int:
        """Put jobs back in their lanes unless they are there or in flight; returns how many were added."""
        added = 0
        for chunk in _chunks(entries, 500):
            args: list[str | float] = []
            for e in chunk:
                args += [e.lane, e.job_id, e.key, e.enqueued_at]
            added += int(self._requeue(keys=[self.index, self.inflight], args=args))
        if added:
            self._redis.rpush(self.wake_key, "1")
        return added

    def has_epoch(self) -> bool:
        return bool(self._redis.exists(self.epoch_key))

    def set_epoch(self) -> None:
        self._redis.set(self.epoch_key, str(time.time()))

    # --- readers (API, stats) --------------------------------------------------------------------------
    def depths(self) -> list[tuple[str, int, float]]:
        """(lane name, size, enqueued_at of its head) for every non-empty lane."""
        names = sorted(_s(n) for n in self._redis.smembers(self.index))
        if not names:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.zcard(self._zkey(name))
            pipe.zrange(self._zkey(name), 0, 0, withscores=True)
        raw = pipe.execute()
        out = []
        for i, name in enumerate(names):
            size, head = int(raw[2 * i]), raw[2 * i + 1]
            if size and head:
                out.append((name, size, float(head[0][1])))
        return out

    def ranks(self, entries: Sequence[Entry]) -> list[int | None]:
        """Each job's place in its lane (0 = next), None when it is not in its lane."""
        if not entries:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for e in entries:
            pipe.zrank(self._zkey(e.lane), e.job_id)
        return [None if r is None else int(r) for r in pipe.execute()]


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _chunks(items: Sequence[Entry], size: int) -> Iterable[Sequence[Entry]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
