"""What a job costs, and the windows spend caps are counted in: pure, no database, no clock.

Replicate prices a model either by the second of `predict_time` on the hardware it runs on, or per
output (per image). The price table is a JSON file (`GENQUEUE_PRICE_TABLE`)::

    {"hardware": {"gpu-a40-large": 0.000725, "cpu": 0.0001},
     "models": {"jigsawstack/image-generation": {"per_output": 0.003},
                "owner/other": {"hardware": "gpu-a40-large"},
                "owner/third": {"per_second": 0.0014}},
     "default": {"per_second": 0.0014}}

A model missing from it costs the default (`GENQUEUE_PRICE_PER_SECOND` per second when the file has
none). A job is billed for the prediction it recorded: its `predict_time` (unless Replicate aborted it
before it ran) and the outputs it stored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Price:
    per_second: float = 0.0
    per_output: float = 0.0


@dataclass(frozen=True, slots=True)
class PriceTable:
    default: Price
    models: Mapping[str, Price] = field(default_factory=dict)

    def price(self, model: str | None) -> Price:
        return self.models.get(model or "", self.default)

    @property
    def prices_outputs(self) -> bool:
        """Whether any price counts outputs (the stats then count them too)."""
        return any(p.per_output for p in (self.default, *self.models.values()))


def job_cost(price: Price, predict_time: float | None, outputs: int, *, aborted: bool = False,
             earlier_seconds: float = 0.0) -> float:
    """USD for one job: seconds billed times the per-second price plus outputs times the per-output one.
    An aborted prediction never ran and is not billed. `earlier_seconds`: what the job's earlier
    attempts were billed (each a prediction of its own: `billed_seconds`)."""
    seconds = 0.0 if aborted or predict_time is None else max(0.0, predict_time)
    seconds += max(0.0, earlier_seconds)
    return round(seconds * price.per_second + max(0, outputs) * price.per_output, 9)


def billed_seconds(predict_time: float | None, prediction_status: str | None) -> float:
    """One finished attempt's billed seconds (an aborted prediction never ran)."""
    return 0.0 if prediction_status == "aborted" or predict_time is None else max(0.0, predict_time)


def _amount(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{where} must be a number >= 0, got {value!r}")
    return float(value)


def _price(where: str, spec: Any, hardware: Mapping[str, float]) -> Price:
    if not isinstance(spec, dict) or not spec or set(spec) - {"per_second", "per_output", "hardware"}:
        raise ValueError(f"{where} must be an object with per_second, per_output or hardware")
    per_second = _amount(f"{where}.per_second", spec.get("per_second", 0))
    if "hardware" in spec:
        if spec["hardware"] not in hardware:
            raise ValueError(f"{where}.hardware {spec['hardware']!r} is not in the hardware table")
        per_second = hardware[spec["hardware"]]
    return Price(per_second=per_second, per_output=_amount(f"{where}.per_output", spec.get("per_output", 0)))


def parse_price_table(doc: Any, default_per_second: float) -> PriceTable:
    """The table from its JSON document; ValueError naming the bad entry."""
    if not isinstance(doc, dict) or set(doc) - {"hardware", "models", "default"}:
        raise ValueError("the price table must be an object with hardware, models and default")
    raw_hw = doc.get("hardware", {})
    if not isinstance(raw_hw, dict):
        raise ValueError("hardware must be an object of class -> USD per second")
    hardware = {str(k): _amount(f"hardware.{k}", v) for k, v in raw_hw.items()}
    default = (_price("default", doc["default"], hardware) if "default" in doc
               else Price(per_second=default_per_second))
    raw_models = doc.get("models", {})
    if not isinstance(raw_models, dict):
        raise ValueError("models must be an object of owner/name -> price")
    return PriceTable(default, {str(m): _price(f"models.{m}", p, hardware) for m, p in raw_models.items()})


def load_price_table(path: str | None, default_per_second: float) -> PriceTable:
    if not path:
        return PriceTable(Price(per_second=default_per_second))
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read the price table {path}: {exc}") from exc
    return parse_price_table(doc, default_per_second)


class Period(StrEnum):
    DAY = "day"
    MONTH = "month"


def spend_window(period: Period, now: datetime) -> tuple[datetime, datetime]:
    """(start, reset) of the UTC calendar day or month that contains `now`."""
    now = now.astimezone(UTC)
    if period is Period.DAY:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    reset = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, reset


@dataclass(frozen=True, slots=True)
class SpendCap:
    limit: float
    period: Period


def cap_reached(cap: SpendCap | None, spent: float) -> bool:
    """A key at or over its cap submits nothing more and its queued jobs wait, until the window resets."""
    return cap is not None and spent >= cap.limit
