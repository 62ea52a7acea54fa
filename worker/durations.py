"""Observed prediction durations per model (EWMA in Redis, shared by the fleet).

The first poll of a new prediction is scheduled for when predictions of its model usually finish,
so a typical prediction is read once, right after it completes, instead of every second; quick models
can be created with Prefer: wait and need no poll at all.
"""

from __future__ import annotations

import time

import redis

ALPHA = 0.2  # weight of the newest observation
CACHE_SECONDS = 2.0  # a scheduling hint: a value a couple of seconds old is as good as a fresh one
# A busy process finishes dozens of predictions a second: it folds them into its own average and
# shares that with the fleet at most this often (one Redis round trip, not one per job).
SHARE_SECONDS = 1.0

# KEYS[1] the model's key; ARGV: observation, alpha, ttl. One round trip per observation.
_EWMA = """
local old = tonumber(redis.call('GET', KEYS[1]))
local new = tonumber(ARGV[1])
if old then new = (1 - tonumber(ARGV[2])) * old + tonumber(ARGV[2]) * new end
redis.call('SET', KEYS[1], string.format('%.4f', new), 'EX', tonumber(ARGV[3]))
return tostring(new)
"""


class Durations:
    def __init__(self, client: redis.Redis, prefix: str = "gq:dur") -> None:
        self._redis = client
        self._prefix = prefix
        self._script = client.register_script(_EWMA)
        self._cache: dict[str, tuple[float, float | None]] = {}
        self._shared_at: dict[str, float] = {}

    def _key(self, model: str | None) -> str:
        return f"{self._prefix}:{model or '-'}"

    def expected(self, model: str | None) -> float | None:
        key = self._key(model)
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        try:
            raw = self._redis.get(key)
        except redis.RedisError:
            return None
        value = float(raw) if raw else None
        self._cache[key] = (time.monotonic(), value)
        return value

    def observe(self, model: str | None, seconds: float | None) -> None:
        if seconds is None or seconds <= 0:
            return
        key = self._key(model)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[1] is not None and now - self._shared_at.get(key, 0.0) < SHARE_SECONDS:
            # Fold it in locally; the next shared update carries it. The local cache keeps its age,
            # so the fleet's value is still read back every CACHE_SECONDS.
            self._cache[key] = (hit[0], (1 - ALPHA) * hit[1] + ALPHA * seconds)
            return
        local = (1 - ALPHA) * hit[1] + ALPHA * seconds if hit is not None and hit[1] is not None else seconds
        self._shared_at[key] = now
        try:
            new = float(self._script(keys=[key], args=[local, ALPHA, 7 * 86400]))
        except redis.RedisError:
            return  # a scheduling hint, never worth failing a job over
        self._cache[key] = (now, new)
