"""Token buckets per (API token, kind): "create" for prediction creates, "read" for the rest.

What every answer's headers mean here (Replicate sends both on every response, reference §1):
``ratelimit-remaining`` is the whole requests the bucket of that kind still holds after this one,
``ratelimit-reset`` the whole seconds (rounded up) until that bucket is full again; a 429 adds
``Retry-After``, the whole seconds (at least 1) until one request fits. The limits default to the
documented ones (§7: 600 creates/min, 3000 reads/min); `config.LIMIT_PRESETS["low_credit"]` is
the account short of credit (6 creates/min, burst 1).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from genqueue.simulator.config import SimConfig


@dataclass
class Bucket:
    tokens: float
    updated: float


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    reset: int
    """Seconds until the bucket is full again."""
    retry_after: int
    """Seconds until one request is available (when not allowed)."""


class RateLimiter:
    def __init__(self, config: SimConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.buckets: dict[tuple[str, str], Bucket] = {}
        self.throttled_by_kind: dict[str, int] = {"create": 0, "read": 0}

    @property
    def throttled(self) -> int:
        return sum(self.throttled_by_kind.values())

    def reset(self) -> None:
        self.buckets.clear()
        self.throttled_by_kind = {"create": 0, "read": 0}

    def _params(self, kind: str) -> tuple[float, float]:
        cfg = self.config
        if kind == "create":
            return cfg.create_limit_per_min / 60.0, cfg.create_capacity()
        return cfg.read_limit_per_min / 60.0, cfg.read_capacity()

    def take(self, key: str, kind: str) -> Decision:
        rate, capacity = self._params(kind)
        now = self.clock()
        bucket = self.buckets.get((key, kind))
        if bucket is None:
            bucket = self.buckets[(key, kind)] = Bucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        allowed = not self.config.rate_limit_enabled or bucket.tokens >= 1.0
        if allowed and self.config.rate_limit_enabled:
            bucket.tokens -= 1.0
        elif not allowed:
            self.throttled_by_kind[kind] = self.throttled_by_kind.get(kind, 0) + 1
        reset = math.ceil(max(0.0, capacity - bucket.tokens) / rate)
        retry_after = max(1, math.ceil((1.0 - bucket.tokens) / rate)) if not allowed else 0
        return Decision(allowed, max(0, int(bucket.tokens)), reset, retry_after)

    def peek(self, key: str, kind: str) -> Decision:
        """Headers for a response that did not consume (e.g. auth failures)."""
        rate, capacity = self._params(kind)
        bucket = self.buckets.get((key, kind))
        tokens = capacity if bucket is None else min(
            capacity, bucket.tokens + (self.clock() - bucket.updated) * rate
        )
        return Decision(True, max(0, int(tokens)), math.ceil(max(0.0, capacity - tokens) / rate), 0)
