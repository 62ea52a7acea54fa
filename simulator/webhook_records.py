"""The simulator's webhook bookkeeping: one prediction's subscription and delivery state, and the
delivery counters `/_sim/stats` reports. Plain records; `webhooks.py` does the scheduling and sending."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Subscription:
    """One prediction's webhook and where its deliveries stand. Never holds a rendered body."""

    url: str
    base: str
    events: frozenset[str]
    start_due: int | None = None
    done_due: int | None = None
    """When the next ``completed`` attempt is due; None while one is in flight or when finished."""
    done_id: str = ""
    first_attempt_us: int | None = None
    attempts: int = 0
    delivered_us: int | None = None
    given_up: bool = False


@dataclass
class WebhookStats:
    sent: int = 0
    attempts: int = 0
    failures: int = 0
    given_up: int = 0
    pending: int = 0
    """``completed`` events neither delivered nor given up yet."""
    lags_us: list[int] = field(default_factory=list)
    """First 2xx send time minus completion time, one per delivered ``completed`` event."""

    def to_json(self) -> dict[str, Any]:
        lags = sorted(self.lags_us)
        lag: dict[str, Any] = {"count": len(lags), "p50": None, "p95": None, "max": None}
        if lags:
            lag.update(p50=_percentile(lags, 0.5), p95=_percentile(lags, 0.95), max=round(lags[-1] / 1000, 3))
        return {
            "webhooks_sent": self.sent,
            "webhook_attempts": self.attempts,
            "webhook_failures": self.failures,
            "webhooks_given_up": self.given_up,
            "webhooks_pending": self.pending,
            "webhook_lag_ms": lag,
        }


def _percentile(ordered: list[int], fraction: float) -> float:
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return round(ordered[index] / 1000, 3)
