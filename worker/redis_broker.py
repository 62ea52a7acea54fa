"""Kombu's Redis transport, with one Redis client per channel instead of one per call.

Kombu builds a fresh `redis.Redis` for every publish, ack and queue-size call (`conn_or_acquire`).
Each one is ~50 us of CPU (redis-py copies its response-callback tables in `__init__`), several per
message: 2.5% of a W1 worker's CPU and 6.4% in W2's py-spy profiles. A `redis.Redis` is safe to share
between threads (it takes a connection from the pool per command), so the channel keeps one, tied to
the pool it was built on: a channel whose pool is replaced (after a disconnect) builds a new client.

Selected with Celery's `broker_transport` (see `worker/celery_app.py`); the URL stays `redis://`.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis

TRANSPORT = "genqueue.worker.redis_broker:Transport"


class Channel(kombu_redis.Channel):
    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the event loop's own connection (BRPOP), already built once by kombu
            return super()._create_client(asynchronous=True)  # type: ignore[misc]  # not in the stubs
        client = self._shared_client
        if client is None or client.connection_pool is not self.pool:
            client = self._shared_client = super()._create_client(asynchronous=False)  # type: ignore[misc]
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel
