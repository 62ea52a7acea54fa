"""Everything one simulator instance holds: config, records, rate limiter, faults, counters."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from genqueue.simulator.config import SimConfig
from genqueue.simulator.faults import Faults
from genqueue.simulator.ratelimit import RateLimiter
from genqueue.simulator.store import Store
from genqueue.simulator.webhooks import WebhookDispatcher

_ENDPOINTS: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(pattern), name)
    for method, pattern, name in (
        ("POST", r"^/v1/predictions/?$", "POST /v1/predictions"),
        ("GET", r"^/v1/predictions/?$", "GET /v1/predictions"),
        ("GET", r"^/v1/predictions/[^/]+/?$", "GET /v1/predictions/{id}"),
        ("POST", r"^/v1/predictions/[^/]+/cancel/?$", "POST /v1/predictions/{id}/cancel"),
        ("POST", r"^/v1/models/[^/]+/[^/]+/predictions/?$", "POST /v1/models/{owner}/{name}/predictions"),
        ("POST", r"^/v1/deployments/[^/]+/[^/]+/predictions/?$",
         "POST /v1/deployments/{owner}/{name}/predictions"),
        ("GET", r"^/v1/models/[^/]+/[^/]+/versions/[^/]+/?$", "GET /v1/models/{owner}/{name}/versions/{id}"),
        ("GET", r"^/v1/webhooks/default/secret/?$", "GET /v1/webhooks/default/secret"),
        ("GET", r"^/files/[^/]+/[^/]+$", "GET /files/{id}/{file}"),
    )
)
CREATE_ENDPOINTS = frozenset(name for _, _, name in _ENDPOINTS if name.endswith("/predictions")
                             and name.startswith("POST"))


def endpoint_name(method: str, path: str) -> str:
    for want, pattern, name in _ENDPOINTS:
        if method == want and pattern.match(path):
            return name
    if path.startswith("/_sim/"):
        return f"{method} {path.rstrip('/')}"
    return f"{method} (other)"


@dataclass
class Stats:
    requests: dict[str, dict[str, int]] = field(default_factory=dict)
    creates: int = 0
    creates_lost: int = 0
    dropped: int = 0
    throttled_faults: int = 0
    throttled_by_kind: dict[str, int] = field(default_factory=lambda: {"create": 0, "read": 0})
    """Every 429 answered (rate limit and fault_429), by budget kind."""

    def count(self, endpoint: str, status: int | str) -> None:
        per = self.requests.setdefault(endpoint, {})
        per[str(status)] = per.get(str(status), 0) + 1


class SimState:
    def __init__(self, config: SimConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = Store(config, clock)
        self.limiter = RateLimiter(config)
        self.faults = Faults(config)
        self.stats = Stats()
        self.webhooks = WebhookDispatcher(config, self.store, self.faults)

    def reset(self) -> None:
        self.store.reset()
        self.limiter.reset()
        self.faults.reset()
        self.webhooks.reset()
        self.stats = Stats()

    def stats_json(self) -> dict[str, Any]:
        total_429 = self.limiter.throttled + self.stats.throttled_faults
        return {
            "requests": self.stats.requests,
            "throttled_429": total_429,
            "throttled_rate_limit": self.limiter.throttled,
            "throttled_429_by_kind": dict(self.stats.throttled_by_kind),
            "throttled_rate_limit_by_kind": dict(self.limiter.throttled_by_kind),
            "throttled_fault": self.stats.throttled_faults,
            "creates": self.stats.creates,
            "creates_lost": self.stats.creates_lost,
            "dropped_connections": self.stats.dropped,
            "faults_injected": dict(self.faults.injected),
            "predictions": len(self.store.order),
            "gets_per_prediction": {r.id: r.gets for r in self.store.order if r.gets},
            **self.webhooks.stats_json(),
        }
