"""The fleet-wide limiter and breaker on a real Redis: shared buckets, pauses, the breaker."""

from __future__ import annotations

import time

import pytest
import redis

from genqueue.worker.budget import Account, Seen
from genqueue.worker.durations import SHARE_SECONDS, Durations
from genqueue.worker.metrics import LIMITER_KEY, REPLICATE_KEY, Recorder, read_counters
from genqueue.worker.ratelimit import HEADROOM, PROBE_SECONDS, CircuitBreaker, RateLimiter


def test_bucket_is_shared_between_limiters(redis_url: str) -> None:
    a = RateLimiter(redis.Redis.from_url(redis_url), create_per_min=600, read_per_min=3000)
    b = RateLimiter(redis.Redis.from_url(redis_url), create_per_min=600, read_per_min=3000)
    assert a.acquire("create") == 0  # nothing learned: one request, and the next waits for its answer
    assert PROBE_SECONDS - 1 < b.acquire("create") <= PROBE_SECONDS
    b.observe("create", Seen(201, remaining=599, reset=1))  # the answer: a normal account
    assert 0 < a.acquire("create") <= 1 / (600 * HEADROOM / 60) + 0.01  # paced from the probe on
    time.sleep(2.1)  # then the bucket fills to its burst
    burst = int(600 * HEADROOM / 30)  # 2 s of budget
    granted = sum(1 for i in range(burst) if (a if i % 2 else b).acquire("create") == 0)
    assert granted == burst
    wait = a.acquire("create")
    assert 0 < wait <= 1 / (600 * HEADROOM / 60) + 0.01  # the next token is one interval away
    assert b.acquire("read") == 0  # reads have their own budget


def test_the_fleet_learns_the_account_from_one_answer(redis_url: str) -> None:
    a = RateLimiter(redis.Redis.from_url(redis_url))  # no caps: the documented budgets
    b = RateLimiter(redis.Redis.from_url(redis_url))
    assert a.rate_per_min("create") == pytest.approx(600 * HEADROOM)
    assert a.rate_per_min("read") == pytest.approx(3000 * HEADROOM)
    assert a.acquire("create") == 0
    a.observe("create", Seen(201, remaining=0, reset=10))  # a low-credit account: 6/min, burst 1
    assert b.account("create") == Account(0.1, capacity=1)  # another worker process sees it at once
    assert b.rate_per_min("create") == pytest.approx(6 * HEADROOM)
    wait = b.acquire("create")
    assert 10.0 < wait <= 1 / (0.1 * HEADROOM) + 0.01  # nothing left: one request's refill at 95 %
    assert b.acquire("read") == 0  # reads keep their own budget
    b.observe("read", Seen(200, remaining=2990, reset=1))  # a normal read answer: nothing to write
    assert b.account("read").rate == 50.0
    for _ in range(30):  # credit added: answers show spare room and a full bucket within a second
        a.observe("create", Seen(201, remaining=3, reset=1))
    assert b.rate_per_min("create") == pytest.approx(600 * HEADROOM)


def test_a_cap_bounds_what_is_learned(redis_url: str) -> None:
    capped = RateLimiter(redis.Redis.from_url(redis_url), create_per_min=60)
    assert capped.rate_per_min("create") == pytest.approx(60 * HEADROOM)
    for _ in range(30):
        capped.observe("create", Seen(201, remaining=500, reset=1))
    assert capped.rate_per_min("create") == pytest.approx(60 * HEADROOM)


def test_pause_and_breaker_block_grants(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(client, create_per_min=600, read_per_min=3000)
    limiter.pause("create", 2.0)
    assert 1.5 < limiter.acquire("create") <= 2.0
    assert limiter.acquire("read") == 0  # a create pause leaves polls alone
    breaker = CircuitBreaker(client, threshold=3, open_for=5.0, prefix="gq:test-cb")
    client.delete(f"{limiter._prefix}:create:paused")
    for _ in range(2):
        breaker.failure()
    assert limiter.acquire("create", also_blocked_by=(breaker.open_key,)) == 0
    breaker.failure()  # third 5xx in the window: open
    assert 4 < limiter.acquire("create", also_blocked_by=(breaker.open_key,)) <= 5


def test_durations_ewma_and_buffered_counters(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    d = Durations(client)
    assert d.expected("acme/model") is None
    d.observe("acme/model", 10.0)  # first observation: shared with the fleet at once
    d.observe("acme/model", 20.0)  # within SHARE_SECONDS: folded in locally only
    assert abs((d.expected("acme/model") or 0) - 12.0) < 1e-6  # 0.8 * 10 + 0.2 * 20
    assert abs(float(client.get("gq:dur:acme/model") or 0) - 10.0) < 1e-3
    time.sleep(SHARE_SECONDS + 0.05)
    d.observe("acme/model", 30.0)  # due: the local average (0.8 * 12 + 0.2 * 30) goes into the shared one
    assert abs(float(client.get("gq:dur:acme/model") or 0) - (0.8 * 10 + 0.2 * 15.6)) < 1e-3
    other = Durations(client)  # another worker process reads the fleet's value
    assert abs((other.expected("acme/model") or 0) - 11.12) < 1e-3
    rec = Recorder(client)
    rec.replicate_response("create", 201)
    rec.limiter_wait("create", 0.5)
    time.sleep(Recorder.FLUSH_EVERY + 0.05)
    rec.replicate_response("create", 201)  # due: flushes everything counted so far
    assert read_counters(client, REPLICATE_KEY) == {"create|201": 2.0}
    assert read_counters(client, LIMITER_KEY) == {"create|count": 1.0, "create|seconds": 0.5}
