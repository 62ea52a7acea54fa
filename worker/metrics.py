"""Counters that must add up across every worker process on every host, kept in Redis hashes.

Job counts and phase timings are derived from SQL at scrape time (the API's /metrics); only what SQL
does not know — Replicate requests by endpoint and status, rate-limiter waits — is counted here.
"""

from __future__ import annotations

import logging

import redis

log = logging.getLogger(__name__)

REPLICATE_KEY = "gq:metrics:replicate_requests"
LIMITER_KEY = "gq:metrics:ratelimit_waits"


class Recorder:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def replicate_response(self, endpoint: str, status: int) -> None:
        try:
            self._redis.hincrby(REPLICATE_KEY, f"{endpoint}|{status}", 1)
        except redis.RedisError:  # metrics must never fail a job
            log.debug("metrics write failed")

    def limiter_wait(self, kind: str, seconds: float) -> None:
        try:
            pipe = self._redis.pipeline()
            pipe.hincrby(LIMITER_KEY, f"{kind}|count", 1)
            pipe.hincrbyfloat(LIMITER_KEY, f"{kind}|seconds", seconds)
            pipe.execute()
        except redis.RedisError:
            log.debug("metrics write failed")


def read_counters(client: redis.Redis, key: str) -> dict[str, float]:
    return {k.decode(): float(v) for k, v in client.hgetall(key).items()}
