"""The broker transport (kombu's Redis transport, one client per channel) against a real Redis:
messages go through, and a channel builds its Redis client once, not once per publish or ack."""

from __future__ import annotations

from typing import Any

import redis
from kombu import Connection

from genqueue.worker.redis_broker import TRANSPORT


def _count_clients(channel: Any) -> list[int]:
    built = [0]

    class CountingRedis(redis.Redis):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built[0] += 1
            super().__init__(*args, **kwargs)

    channel.Client = CountingRedis  # the class kombu's channel builds its clients from
    return built


def _round_trip(url: str, transport: str | None) -> int:
    with Connection(url, transport=transport) as conn:
        built = _count_clients(conn.default_channel)
        queue = conn.SimpleQueue("genqueue.test.broker")
        for i in range(20):
            queue.put({"n": i})
        got = []
        for _ in range(20):
            message = queue.get(timeout=5)
            got.append(message.payload["n"])
            message.ack()
        queue.close()
        assert got == list(range(20))
        return built[0]


def test_messages_flow_and_the_channel_reuses_one_client(redis_url: str) -> None:
    assert _round_trip(redis_url, None) > 20  # kombu's own transport: a client per call
    assert _round_trip(redis_url, TRANSPORT) <= 2  # ours: one, plus the event loop's own
