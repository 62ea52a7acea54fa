"""A Redis lease: the one-at-a-time rule of the dispatcher and of the page reader.

Every worker runs both threads; each step renews (or tries to take) the lease, so when its holder
dies another worker holds it within `LEASE` + one step.
"""

from __future__ import annotations

import logging

import redis

log = logging.getLogger(__name__)

LEASE = 3.0  # seconds a lease lasts without renewal

# KEYS[1] the lease; ARGV: me, ms. Take the lease if free, renew it if mine. Returns 1 if held.
_TAKE_OR_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


class Lease:
    def __init__(self, client: redis.Redis, key: str, me: str, what: str) -> None:
        self._redis = client
        self._script = client.register_script(_TAKE_OR_RENEW)
        self.key = key
        self._me = me
        self._what = what
        self.held = False

    def renew(self) -> bool:
        """Take or renew the lease; whether this holder has it. A change is logged (and `held` shows it)."""
        held = bool(self._script(keys=[self.key], args=[self._me, int(LEASE * 1000)]))
        if held != self.held:
            log.info("%s %s %s", self._what, self._me, "leads" if held else "stands by")
            self.held = held
        return held

    def resign(self) -> None:
        """On a clean stop: hand over at once instead of after the lease."""
        try:
            if self._redis.get(self.key) == self._me.encode():
                self._redis.delete(self.key)
        except redis.RedisError:
            pass
