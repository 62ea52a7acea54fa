"""Constants and helpers shared by the simulator tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from genqueue.simulator.server import SimHandle

TOKEN = "r8_sim_fake_token"
VERSION = "43d5bce2e1c97fa1e7d8996187a85cd5c882787989091af3b135c7a16ca23b79"
REF = f"jigsawstack/image-generation:{VERSION}"
GOOD_INPUT = {"prompt": "an ocean", "api_key": "sk_secret_value", "aspect_ratio": "16:9", "steps": 4}
FAST = {"start_delay": 0.05, "predict_seconds": 0.15}
MakeSim = Callable[..., SimHandle]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def create(c: httpx.Client, inp: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
    body = {"version": REF, "input": GOOD_INPUT if inp is None else inp}
    return c.post("/v1/predictions", json=body, **kwargs)
