"""Figures read off the simulator's counters and off job timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def as_epoch(dt: datetime | str | None) -> float | None:
    if dt is None:
        return None
    if isinstance(dt, str):  # SQLite may hand back text
        dt = datetime.fromisoformat(dt)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def sim_request_counts(stats: dict[str, Any]) -> dict[str, int]:
    return {ep: sum(per.values()) for ep, per in stats.get("requests", {}).items()}


def gets_summary(stats: dict[str, Any]) -> dict[str, Any]:
    """Replicate calls per prediction, from the simulator's own counters."""
    counts = sim_request_counts(stats)
    preds = int(stats.get("predictions", 0)) or 1
    gets = counts.get("GET /v1/predictions/{id}", 0)
    creates = sum(n for ep, n in counts.items() if ep.startswith("POST") and ep.endswith("/predictions"))
    per = sorted(stats.get("gets_per_prediction", {}).values())
    per = [0] * (int(stats.get("predictions", 0)) - len(per)) + per
    return {
        "predictions": stats.get("predictions", 0), "creates": creates, "gets": gets,
        "gets_per_prediction": round(gets / preds, 3),
        "gets_per_prediction_max": max(per) if per else 0,
        "list_gets": counts.get("GET /v1/predictions", 0), "file_gets": counts.get("GET /files/{id}/{file}", 0),
        "throttled_429": stats.get("throttled_429", 0),
        **({"webhooks_sent": stats["webhooks_sent"], "webhook_failures": stats.get("webhook_failures"),
            "webhook_send_lag_ms": stats.get("webhook_lag_ms")} if stats.get("webhook_attempts") else {}),
    }
