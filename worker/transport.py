"""An httpx transport with one small connection pool per thread.

A threads-pool worker runs dozens of requests at once through one client. httpcore's pool walks every
connection it holds on each request (checking which are idle and still readable, a syscall each), so
with 64 threads that walk was ~10% of the worker's CPU. Per-thread pools keep each walk to the one or
two connections that thread uses; the total number of sockets stays the same.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx


class PerThreadTransport(httpx.BaseTransport):
    def __init__(self, factory: Callable[[], httpx.BaseTransport] | None = None) -> None:
        self._factory = factory or (lambda: httpx.HTTPTransport(limits=httpx.Limits(max_connections=4)))
        self._local = threading.local()
        self._all: list[httpx.BaseTransport] = []
        self._lock = threading.Lock()

    def _mine(self) -> httpx.BaseTransport:
        transport: httpx.BaseTransport | None = getattr(self._local, "transport", None)
        if transport is None:
            transport = self._local.transport = self._factory()
            with self._lock:
                self._all.append(transport)
        return transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._mine().handle_request(request)

    def close(self) -> None:
        with self._lock:
            transports, self._all = self._all, []
        for transport in transports:
            transport.close()
