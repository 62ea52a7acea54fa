"""The rule a callback URL must pass at submit (and again at delivery): http(s), a host, no
credentials, and, unless CALLBACK_ALLOW_PRIVATE, no loopback/private destination (SSRF: genqueue would
otherwise POST from inside its network wherever a caller points it).

At submit a literal address is checked with the outbound rule of `worker.egress.is_public`, and names
that can only be local are refused; a name is resolved, and every address checked and pinned, by the
delivering worker (`worker.services.callbacks`): a submit-time lookup would prove nothing about the
addresses the name has 24 h later (DNS rebinding), and would make accepting a job depend on DNS.
"""

from __future__ import annotations

import httpx

from genqueue.worker.egress import ip_of, is_public

MAX_URL_LENGTH = 2000
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa", ".lan", ".localdomain")


def parse(url: str) -> httpx.URL | None:
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None


def problem(url: str, allow_private: bool) -> str | None:
    """Why `url` cannot be a callback URL (the reason of a 422), or None when it can."""
    if len(url) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters"
    parsed = parse(url)
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        return "must be an absolute http(s) URL"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "must not contain spaces or control characters"
    if parsed.port is not None and not 0 < parsed.port < 65536:
        return "must have a port from 1 to 65535"
    if parsed.userinfo:
        return "must not carry credentials (they would be stored in the clear)"
    if parsed.fragment:
        return "must not have a fragment"
    if allow_private:
        return None
    host = parsed.host.lower().rstrip(".")
    if ip_of(host) is not None:
        return None if is_public(host) else "must not be a loopback or private address"
    if host == "localhost" or host.endswith(_LOCAL_SUFFIXES) or "." not in host:
        return "must not name a loopback or private host"
    return None
