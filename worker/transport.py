"""The worker's httpx clients: httpx's own transport (its connection pool), and no cookie jar.

Until the worker redesign the worker had its own transport over `http.client` (0.40 ms per POST
against httpx's 1.06 ms, measured on loopback). Two requests per job make that ~1.3 ms of CPU per
job; at Replicate's real create budget (600/min = 10 jobs/s) it is about 1.3% of one core, so the
library's transport is used instead (its pool, TLS and proxy handling are maintained by httpx).

Address pinning (DNS rebinding): ``worker.fetch`` resolves an output host once, checks the addresses,
and then calls the transport inside ``pinned(host, port, address)``. The transport's network backend
connects a new connection for exactly that host and port to the checked address instead of resolving
the name again. Only the TCP connect changes: the URL, the ``Host`` header, the connection pool's key
and the TLS SNI and certificate check all still use the host name (httpcore passes the origin's host to
``start_tls``). A pooled keep-alive connection for that host is reused as is; it was made to an address
that was checked when it was made. Outside ``pinned`` (the Replicate API client) names resolve as usual.
The pin is a context variable, so each worker thread sees only its own.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

# The pool is shared by the worker's threads (up to 64 with --pool threads): no thread waits for a
# connection, and idle ones are kept for the next create or download.
POOL_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=64)


_PIN: contextvars.ContextVar[tuple[str, int, str] | None] = contextvars.ContextVar("genqueue_pin", default=None)


@contextmanager
def pinned(host: str, port: int, address: str) -> Iterator[None]:
    """Within this block, a new connection to ``host:port`` goes to ``address`` (already checked)."""
    token = _PIN.set((host.lower().rstrip("."), port, address))
    try:
        yield
    finally:
        _PIN.reset(token)


def pin_target(pin: tuple[str, int, str] | None, host: str, port: int) -> str:
    """The address to connect to for ``host:port``: the pinned one, else the name itself.

    A pin for another host or port means the request is not going where it was checked (say, through
    a proxy): refuse rather than resolve a name nobody checked."""
    if pin is None:
        return host
    pin_host, pin_port, address = pin
    if (host.lower().rstrip("."), port) != (pin_host, pin_port):
        raise httpcore.ConnectError(f"connection to {host}:{port} does not match the checked address")
    return address


class PinningBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting to the pinned address when ``pinned`` is active."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        target = pin_target(_PIN.get(), host, port)
        return super().connect_tcp(target, port, timeout=timeout, local_address=local_address,
                                   socket_options=socket_options)


def make_transport(**kwargs: Any) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(limits=POOL_LIMITS, **kwargs)
    pool: Any = getattr(transport, "_pool", None)
    # httpx has no public way to choose httpcore's network backend; the pool reads this attribute each
    # time it opens a connection (httpcore 1.x). If a future httpcore drops it, fail loudly: silently
    # losing the pin would reopen DNS rebinding. Through a proxy the connect goes to the proxy, not to
    # the checked address, so pin_target refuses pinned requests there.
    if pool is None or not hasattr(pool, "_network_backend"):
        raise RuntimeError("httpcore's connection pool changed: cannot pin checked addresses")
    pool._network_backend = PinningBackend()
    return transport


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
