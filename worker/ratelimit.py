"""One rate limiter for every worker on every host: a token bucket kept in Redis, updated atomically.

Creates and reads have separate budgets. Each starts at Replicate's documented rate (600 creates/min,
3000 other requests/min per account, or the configured cap if lower) and then follows the account
as its answers show it (`observe`, the rule in `worker.budget`): an account short of credit, allowed
6 creates a minute, is paced at 6 a minute. A caller that gets no token is told how long to wait
and reschedules itself instead of sleeping, so a worker slot is never held by the limiter.
"""

from __future__ import annotations

import time

import redis

from genqueue.worker.budget import KINDS, Account, Seen, ceiling_per_s, learn, pace, starting

# The fleet's pacing from the account's learned rate, in both scripts below: `headroom` of it, with
# a burst of 2 s of that (at least 1). Must match `worker.budget.pace`.
_PACE = """
local function pace(acct, ceiling, headroom)
  local rate = math.min(acct, ceiling) * headroom
  return rate, math.max(1, rate * 2)
end
"""

# KEYS[1] bucket hash, KEYS[2] the account's learned rate (hash), KEYS[3] the probe key, KEYS[4..]
# "pause" keys (a 429 pause, an open circuit breaker). ARGV: starting account rate/s, ceiling/s,
# headroom, cost, probe ms. Returns seconds to wait (0 = granted), as a string. One round trip per
# grant: the pause checks, the learned rate and Redis's own clock are read inside the script.
_ACQUIRE = _PACE + """
local wait = 0
for i = 4, #KEYS do
  local ms = redis.call('PTTL', KEYS[i])
  if ms > 0 and ms / 1000 > wait then wait = ms / 1000 end
end
if wait > 0 then return tostring(wait) end
local acct = tonumber(redis.call('HGET', KEYS[2], 'rate'))
local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if acct == nil then
  -- Nothing learned yet (a new fleet, or Redis lost it): one request at a time until its answer
  -- teaches the fleet (`observe` writes the account), or the probe's time runs out. The account may
  -- allow far less than the documented rate (6 creates/min, burst 1): a burst sent before the first
  -- answer would be a burst of 429s.
  local ms = redis.call('PTTL', KEYS[3])
  if ms > 0 then return tostring(ms / 1000) end
  redis.call('SET', KEYS[3], '1', 'PX', tonumber(ARGV[5]))
  redis.call('HSET', KEYS[1], 'tokens', 0, 'ts', now)
  redis.call('EXPIRE', KEYS[1], 120)
  return '0'
end
local rate, burst = pace(acct, tonumber(ARGV[2]), tonumber(ARGV[3]))
local cost = tonumber(ARGV[4])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]); local ts = tonumber(b[2])
-- A bucket with no recent use starts with one request, not a burst: the first answer tells the fleet
-- where the account stands before it spends more.
if tokens == nil then tokens = math.min(1, burst); ts = now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
if tokens >= cost then tokens = tokens - cost else wait = (cost - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return tostring(wait)
"""

# KEYS[1] bucket hash, KEYS[2] account hash. ARGV: starting rate/s, ceiling/s, headroom, the new
# account rate/s, the capacity seen, tokens at most (-1: no bound). The bucket is first brought up to
# now at the rate it had, so a new rate applies from now on only; then it holds no more than the
# account says it has left.
_OBSERVE = _PACE + """
local ceiling = tonumber(ARGV[2]); local headroom = tonumber(ARGV[3])
local old = tonumber(redis.call('HGET', KEYS[2], 'rate')) or tonumber(ARGV[1])
local rate, burst = pace(old, ceiling, headroom)
local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]); local ts = tonumber(b[2])
if tokens == nil then tokens = math.min(1, burst); ts = now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local new_rate, new_burst = pace(tonumber(ARGV[4]), ceiling, headroom)
tokens = math.min(tokens, new_burst)
local at_most = tonumber(ARGV[6])
if at_most >= 0 then tokens = math.min(tokens, at_most) end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('EXPIRE', KEYS[1], math.ceil(new_burst / new_rate) + 60)
redis.call('HSET', KEYS[2], 'rate', ARGV[4], 'capacity', ARGV[5])
redis.call('EXPIRE', KEYS[2], 86400)
return 1
"""


# The share of the learned account rate the fleet spends. 98 %: the dispatcher is the fleet's one
# create pacer (worker.dispatcher), so grants no longer arrive from many workers in clumps; W6 at 95 %
# left 5 % of a paying account's budget unused, and at 98 % drew no 429 (BENCHMARKS.md).
HEADROOM = 0.98
# Before anything is learned, one request at a time: the next waits for its answer, at most this long.
# Longer than a create's answer usually takes (Prefer: wait holds it up to 5 s on a threads pool).
PROBE_SECONDS = 10.0


class RateLimiter:
    """`create_per_min` / `read_per_min`: optional caps (None: Replicate's documented budget is the
    most the fleet spends). What the fleet spends below that is learned from the account (`observe`)."""

    def __init__(self, client: redis.Redis, *, create_per_min: float | None = None,
                 read_per_min: float | None = None, prefix: str = "gq:rl") -> None:
        self._redis = client
        self._acquire = client.register_script(_ACQUIRE)
        self._observe = client.register_script(_OBSERVE)
        # HEADROOM of the budget with a burst of ~2 s: grants and arrivals at Replicate are separated by
        # variable network and queueing delays, so running exactly at the limit with a large burst
        # produced occasional 429s (benchmarks/fleet_ratelimit.py); the headroom keeps them away.
        caps = {"create": create_per_min, "read": read_per_min}
        self._start = {kind: starting(kind, caps[kind]).rate for kind in KINDS}
        self._ceiling = {kind: ceiling_per_s(kind, caps[kind]) for kind in KINDS}
        self._prefix = prefix

    def acquire(self, kind: str, cost: float = 1.0, also_blocked_by: tuple[str, ...] = ()) -> float:
        """Take `cost` tokens of `kind` ("create" or "read"); returns 0.0, or seconds to wait first.
        A pause of `kind` (after a 429) or any key in `also_blocked_by` that is set blocks the grant.
        Redis's clock is used, so hosts with skewed clocks share one bucket correctly."""
        keys = [f"{self._prefix}:{kind}", f"{self._prefix}:{kind}:account", f"{self._prefix}:{kind}:probe",
                f"{self._prefix}:{kind}:paused", *also_blocked_by]
        args = [self._start[kind], self._ceiling[kind], HEADROOM, cost, int(PROBE_SECONDS * 1000)]
        return float(self._acquire(keys=keys, args=args))

    def pause(self, kind: str, seconds: float) -> None:
        """Stop granting `kind` for a while (a 429 from Replicate says our budget is off)."""
        self._redis.set(f"{self._prefix}:{kind}:paused", "1", px=max(1, int(seconds * 1000)))

    def account(self, kind: str) -> Account:
        """What the fleet believes about the account's `kind` budget (the starting rate if nothing yet)."""
        return self._account(kind)[0]

    def _account(self, kind: str) -> tuple[Account, bool]:
        rate, capacity = self._redis.hmget(f"{self._prefix}:{kind}:account", "rate", "capacity")
        if rate is None:
            return Account(self._start[kind]), False
        return Account(float(rate), int(float(capacity or 0))), True

    def rate_per_min(self, kind: str) -> float:
        """Requests per minute the fleet grants now for `kind` (the headroom applied)."""
        return pace(min(self.account(kind).rate, self._ceiling[kind]), HEADROOM)[0] * 60.0

    def observe(self, kind: str, seen: Seen) -> None:
        """Learn from one Replicate answer of `kind`: the whole fleet follows the account from now on.

        One read of the account's state, then (only when something changes) one atomic update: a
        normal account's answers change nothing and cost a single HMGET."""
        current, known = self._account(kind)
        out = learn(current, seen, self._ceiling[kind])
        burst = pace(current.rate, HEADROOM)[1]
        if known and out.account == current and (out.tokens_at_most is None or out.tokens_at_most >= burst):
            return  # an answer, even one without headers, ends the probe: write the account then
        keys = [f"{self._prefix}:{kind}", f"{self._prefix}:{kind}:account"]
        at_most = -1.0 if out.tokens_at_most is None else out.tokens_at_most
        self._observe(keys=keys, args=[self._start[kind], self._ceiling[kind], HEADROOM, out.account.rate,
                                       out.account.capacity, at_most])


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
