"""kombu's Redis transport with one failure caught: a channel whose connection Redis dropped being used
anyway (to hand its unacknowledged messages back, to ack or reject).

With kombu 5.7, when Redis restarts (every client connection dropped) the worker's consumer closes its
channel, and the channel's QoS then uses a connection that no longer exists: to push the messages it
holds back to their queues, or to ack a task that finishes after the reconnect. An `AttributeError`
(`'NoneType' object has no attribute 'hostname'` / `'client'`) escapes, Celery calls it an
unrecoverable error and the worker process exits. Measured in the chaos
suite (tests/chaos/test_restarts.py): every worker exited at every Redis restart and was down until
its supervisor restarted it (a p95 recovery of ~10 s, and no recovery at all without a supervisor).
With the failure caught the worker reconnects by itself. The messages it held stay in Redis's unacked
set (handed back after the visibility timeout); the sweeper re-sends their steps within seconds.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)


def _connection_gone(qos: kombu_redis.QoS) -> bool:
    """Whether the QoS's channel has lost its connection (closed after Redis dropped it)."""
    connection = qos.channel.connection
    return connection is None or connection.client is None


class QoS(kombu_redis.QoS):
    def restore_unacked(self, client: Any = None) -> Any:
        try:
            return super().restore_unacked(client)
        except AttributeError:
            if not _connection_gone(self):
                raise
            held: dict[str, Any] = self._delivered or {}
            log.warning("%d unacknowledged messages could not be handed back to Redis (connection lost); "
                        "the sweeper re-sends their steps", len(held))
            held.clear()
            return None

    def ack(self, delivery_tag: str) -> None:
        # A task that ends after its channel lost the connection: the ack cannot reach Redis. The
        # message stays in the unacked set and comes back after the visibility timeout; the step it
        # carries finds its job moved on (compare-and-set) and does nothing.
        try:
            super().ack(delivery_tag)
        except AttributeError:
            if not _connection_gone(self):
                raise
            log.info("ack of a message from a channel whose connection was lost skipped")

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        try:
            super().reject(delivery_tag, requeue=requeue)
        except AttributeError:
            if not _connection_gone(self):
                raise
            log.info("reject of a message from a channel whose connection was lost skipped")


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel


# Celery's `broker_transport` setting takes this path.
TRANSPORT = f"{__name__}:Transport"
