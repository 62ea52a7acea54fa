"""kombu's Redis transport with one failure caught: handing unacknowledged messages back to Redis
after the connection to it was lost.

With kombu 5.7, when Redis restarts (every client connection dropped) the worker's consumer closes its
channel, and the channel's QoS tries to push the messages it holds back to their queues over a
connection that no longer exists: `AttributeError: 'NoneType' object has no attribute 'hostname'`
escapes, Celery calls it an unrecoverable error and the worker process exits. Measured in the chaos
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


class QoS(kombu_redis.QoS):
    def restore_unacked(self, client: Any = None) -> Any:
        try:
            return super().restore_unacked(client)
        except AttributeError:  # the connection is gone (see the module docstring)
            held: dict[str, Any] = self._delivered or {}
            log.warning("%d unacknowledged messages could not be handed back to Redis (connection lost); "
                        "the sweeper re-sends their steps", len(held))
            held.clear()
            return None


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel


# Celery's `broker_transport` setting takes this path.
TRANSPORT = f"{__name__}:Transport"
