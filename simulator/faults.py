"""Fault injection: seeded dice plus the trick that drops a connection without any answer."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from genqueue.simulator.config import SimConfig


class Faults:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        seed = self.config.seed
        self.rng = random.Random(seed + 7919) if seed is not None else random.Random()
        self.downloaded: set[tuple[str, int]] = set()
        self.injected: dict[str, int] = {}

    def roll(self, knob: str) -> bool:
        """True with probability ``config.<knob>``; counts what was injected."""
        prob = float(getattr(self.config, knob))
        if prob <= 0.0:
            return False
        hit = self.rng.random() < prob
        if hit:
            self.injected[knob] = self.injected.get(knob, 0) + 1
        return hit

    def server_error(self) -> tuple[int, bytes, str]:
        """(status, body, content type) of an injected 5xx: 503 or 500, empty or plain text body."""
        status = self.rng.choice((500, 503))
        if self.rng.random() < 0.5:
            return status, b"", "text/plain"
        text = "Service Unavailable" if status == 503 else "Internal Server Error"
        return status, text.encode(), "text/plain; charset=utf-8"

    def first_download_fails(self, pid: str, index: int) -> bool:
        """The first GET of each output file may fail (404/500); later ones always work."""
        key = (pid, index)
        if key in self.downloaded:
            return False
        self.downloaded.add(key)
        return self.roll("fault_first_download")


async def drop_connection(send: Any) -> bool:
    """Close the TCP connection under an ASGI request without sending a response.

    uvicorn hands the app ``RequestResponseCycle.send`` (a bound method whose owner keeps the
    asyncio transport); closing that transport makes the client see the server disconnect
    without answering (httpx.RemoteProtocolError). Waits until uvicorn has noticed, so it does
    not try to write its own 500 afterwards. Returns False when the server is not uvicorn.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None or not hasattr(transport, "close"):
        return False
    transport.close()
    for _ in range(100):
        if getattr(cycle, "disconnected", True):
            break
        await asyncio.sleep(0.001)
    return True
