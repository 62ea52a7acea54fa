"""One rate limiter for every worker on every host: a token bucket kept in Redis, updated atomically.

Creates and reads have separate budgets (Replicate: 600 creates/min and 3000 other requests/min per
account). A caller that gets no token is told how long to wait and reschedules itself instead of
sleeping, so a worker slot is never held by the limiter.
"""

from __future__ import annotations

import time

import redis

# KEYS[1] bucket hash, KEYS[2..] "pause" keys (a 429 pause, an open circuit breaker).
# ARGV: rate per second, burst, cost. Returns seconds to wait (0 = granted), as a string.
# One round trip per grant: the pause checks and Redis's own clock are read inside the script.
_LUA = """
local wait = 0
for i = 2, #KEYS do
  local ms = redis.call('PTTL', KEYS[i])
  if ms > 0 and ms / 1000 > wait then wait = ms / 1000 end
end
if wait > 0 then return tostring(wait) end
local rate = tonumber(ARGV[1]); local burst = tonumber(ARGV[2]); local cost = tonumber(ARGV[3])
local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]); local ts = tonumber(b[2])
if tokens == nil then tokens = burst; ts = now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
if tokens >= cost then tokens = tokens - cost else wait = (cost - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return tostring(wait)
"""


HEADROOM = 0.95


class RateLimiter:
    def __init__(self, client: redis.Redis, *, create_per_min: int, read_per_min: int, prefix: str = "gq:rl") -> None:
        self._redis = client
        self._script = client.register_script(_LUA)
        # 95 % of the budget with a burst of ~2 s: grants and arrivals at Replicate are separated by
        # variable network and queueing delays, so running exactly at the limit with a large burst
        # produced occasional 429s (benchmarks/fleet_ratelimit.py); this headroom removed them.
        self._limits = {
            kind: (per_min * HEADROOM / 60.0, max(1.0, per_min * HEADROOM / 30.0))
            for kind, per_min in (("create", create_per_min), ("read", read_per_min))
        }
        self._prefix = prefix

    def acquire(self, kind: str, cost: float = 1.0, also_blocked_by: tuple[str, ...] = ()) -> float:
        """Take `cost` tokens of `kind` ("create" or "read"); returns 0.0, or seconds to wait first.
        A pause of `kind` (after a 429) or any key in `also_blocked_by` that is set blocks the grant.
        Redis's clock is used, so hosts with skewed clocks share one bucket correctly."""
        rate, burst = self._limits[kind]
        keys = [f"{self._prefix}:{kind}", f"{self._prefix}:{kind}:paused", *also_blocked_by]
        return float(self._script(keys=keys, args=[rate, burst, cost]))

    def pause(self, kind: str, seconds: float) -> None:
        """Stop granting `kind` for a while (a 429 from Replicate says our budget is off)."""
        self._redis.set(f"{self._prefix}:{kind}:paused", "1", px=max(1, int(seconds * 1000)))


class CircuitBreaker:
    """Pauses creates after repeated 5xx from Replicate; polls go on (they are cheap and safe).

    Home-made on purpose: the state must be shared by every worker of the fleet (one 5xx streak seen
    by 2 hosts x 64 threads is one outage): two Redis keys, written when a create fails and cleared
    at most once a second per process on success. The chaos suite's 5xx faults (docs/RELIABILITY.md) test it."""

    def __init__(self, client: redis.Redis, *, threshold: int = 5, window: float = 30.0, open_for: float = 15.0,
                 prefix: str = "gq:cb") -> None:
        self._redis = client
        self._threshold = threshold
        self._window = window
        self._open_for = open_for
        self._prefix = prefix
        self._cleared_at = 0.0

    @property
    def open_key(self) -> str:
        return f"{self._prefix}:open"

    def failure(self) -> None:
        self._cleared_at = 0.0  # the next success resets the streak at once
        key = f"{self._prefix}:fails"
        pipe = self._redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, int(self._window))
        count = int(pipe.execute()[0])
        if count >= self._threshold:
            self._redis.set(f"{self._prefix}:open", str(time.time()), px=int(self._open_for * 1000))
            self._redis.delete(key)

    def success(self) -> None:
        # A streak of 5xx is broken by any success; one reset a second per process is enough for that
        # and saves a Redis round trip on every create.
        now = time.monotonic()
        if now - self._cleared_at < 1.0:
            return
        self._cleared_at = now
        self._redis.delete(f"{self._prefix}:fails")
