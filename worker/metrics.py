"""Counters that must add up across every worker process on every host, kept in Redis hashes.

Job counts and phase timings are derived from SQL at scrape time (the API's /metrics); only what SQL
does not know — Replicate requests by endpoint and status, rate-limiter waits — is counted here.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

log = logging.getLogger(__name__)

REPLICATE_KEY = "gq:metrics:replicate_requests"
LIMITER_KEY = "gq:metrics:ratelimit_waits"
STEPS_KEY = "gq:metrics:step_runs"  # task executions by step: submit runs per job is the pacing's figure


class Recorder:
    """Counts in memory and adds them to Redis at most once a second (one pipeline), instead of one
    Redis round trip per Replicate request. A killed worker loses at most a second of counts."""

    FLUSH_EVERY = 1.0

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], float] = {}
        self._last_flush = time.monotonic()

    def _add(self, key: str, field: str, amount: float) -> None:
        with self._lock:
            self._counts[(key, field)] = self._counts.get((key, field), 0) + amount
            if time.monotonic() - self._last_flush < self.FLUSH_EVERY:
                return
            counts, self._counts = self._counts, {}
            self._last_flush = time.monotonic()
        self._write(counts)

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
            self._last_flush = time.monotonic()
        self._write(counts)

    def _write(self, counts: dict[tuple[str, str], float]) -> None:
        if not counts:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for (key, field), amount in counts.items():
                if float(amount).is_integer():
                    pipe.hincrby(key, field, int(amount))
                else:
                    pipe.hincrbyfloat(key, field, amount)
            pipe.execute()
        except redis.RedisError:  # metrics must never fail a job
            log.debug("metrics write failed")

    def replicate_response(self, endpoint: str, status: int) -> None:
        self._add(REPLICATE_KEY, f"{endpoint}|{status}", 1)

    def step_run(self, name: str) -> None:
        self._add(STEPS_KEY, name, 1)

    def limiter_wait(self, kind: str, seconds: float) -> None:
        self._add(LIMITER_KEY, f"{kind}|count", 1)
        self._add(LIMITER_KEY, f"{kind}|seconds", seconds)


def read_counters(client: redis.Redis, key: str) -> dict[str, float]:
    return {k.decode(): float(v) for k, v in client.hgetall(key).items()}
