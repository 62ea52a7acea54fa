"""The worker's httpx clients: httpx's own transport (its connection pool), and no cookie jar.

Until the worker redesign the worker had its own transport over `http.client` (0.40 ms per POST
against httpx's 1.06 ms, measured on loopback). Two requests per job make that ~1.3 ms of CPU per
job; at Replicate's real create budget (600/min = 10 jobs/s) it is about 1.3% of one core, so the
library's transport is used instead (its pool, TLS and proxy handling are maintained by httpx).
"""

from __future__ import annotations

from typing import Any

import httpx

# The pool is shared by the worker's threads (up to 64 with --pool threads): no thread waits for a
# connection, and idle ones are kept for the next create or download.
POOL_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=64)


def make_transport(**kwargs: Any) -> httpx.HTTPTransport:
    return httpx.HTTPTransport(limits=POOL_LIMITS, **kwargs)


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
