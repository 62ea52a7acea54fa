"""The worker's HTTP plumbing: a client that keeps no cookies, and one small connection pool per thread.

A threads-pool worker runs dozens of requests at once through one client. httpcore's pool walks every
connection it holds on each request (checking which are idle and still readable, a syscall each), so
with 64 threads that walk was ~10% of the worker's CPU. Per-thread pools keep each walk to the one or
two connections that thread uses; the total number of sockets stays the same.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

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


class _NoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class CookielessClient(httpx.Client):
    """An httpx.Client that never stores cookies.

    Replicate's API and output hosts need none, yet httpx feeds every response through the stdlib
    cookie jar, building a urllib Request (a second URL parse) each time: ~5% of a W1 worker's CPU
    in a py-spy profile. Cookies the caller passes per request are still sent.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, value: object) -> None:  # there is nowhere to keep them
        raise TypeError("CookielessClient keeps no cookies")
