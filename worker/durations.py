"""Observed prediction durations per model (EWMA in Redis, shared by the fleet).

The first poll of a new prediction is scheduled for when predictions of its model usually finish,
so a typical prediction is read once, right after it completes, instead of every second.
"""

from __future__ import annotations

import redis

ALPHA = 0.2  # weight of the newest observation


class Durations:
    def __init__(self, client: redis.Redis, prefix: str = "gq:dur") -> None:
        self._redis = client
        self._prefix = prefix

    def expected(self, model: str | None) -> float | None:
        try:
            raw = self._redis.get(f"{self._prefix}:{model or '-'}")
        except redis.RedisError:
            return None
        return float(raw) if raw else None

    def observe(self, model: str | None, seconds: float | None) -> None:
        if seconds is None or seconds <= 0:
            return
        key = f"{self._prefix}:{model or '-'}"
        try:
            old = self._redis.get(key)
            new = seconds if old is None else (1 - ALPHA) * float(old) + ALPHA * seconds
            self._redis.set(key, f"{new:.4f}", ex=7 * 86400)
        except redis.RedisError:
            pass  # a scheduling hint, never worth failing a job over
