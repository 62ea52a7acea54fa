from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sim_helpers import AUTH, FAST

from genqueue.simulator.config import SimConfig
from genqueue.simulator.server import SimHandle, run_in_thread


@pytest.fixture
def make_sim() -> Iterator[Callable[..., SimHandle]]:
    started: list[SimHandle] = []

    def factory(**kwargs: Any) -> SimHandle:
        handle = run_in_thread(SimConfig(**{**FAST, **kwargs}))
        started.append(handle)
        return handle

    yield factory
    for handle in started:
        handle.stop()


@pytest.fixture
def sim(make_sim: Callable[..., SimHandle]) -> SimHandle:
    return make_sim()


@pytest.fixture
def client(sim: SimHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url, headers=AUTH, timeout=10) as c:
        yield c

