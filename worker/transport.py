"""The worker's httpx client: one that keeps no cookies (its transport is `worker.stdlib_http`)."""

from __future__ import annotations

from typing import Any

import httpx


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
