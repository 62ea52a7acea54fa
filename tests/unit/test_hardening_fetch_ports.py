"""Hardening of worker.fetch's host checks: allow-list entries are origins (a port in an entry allows
that port only; none means the scheme's default port), and non-public address classes (6to4, Teredo,
site-local, NAT64, 192.0.0.0/24) are refused before any request is made."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from genqueue.worker import fetch
from genqueue.worker.fetch import OutputRefused, host_allowed, open_output

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _client() -> tuple[httpx.Client, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=PNG, headers={"content-type": "image/png"})

    return httpx.Client(transport=httpx.MockTransport(answer)), seen


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    table: dict[str, list[str]] = {}

    def fake(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        addrs = table.get(host, [host] if host[0].isdigit() or ":" in host else ["34.120.1.2"])
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in addrs]

    monkeypatch.setattr(fetch.socket, "getaddrinfo", fake)
    return table


def _get(url: str, http: httpx.Client, allowed: list[str], **kw: Any) -> bytes:
    with open_output(url, http=http, allowed_hosts=allowed, **kw) as src:
        return b"".join(src.chunks)


# ---- finding 1: ports -----------------------------------------------------------------------------


def test_entry_with_port_allows_that_port_only(dns: dict[str, list[str]]) -> None:
    http, seen = _client()
    assert _get("http://127.0.0.1:5001/a.png", http, ["127.0.0.1:5001"]) == PNG
    for url in ("http://127.0.0.1:6379/x", "http://127.0.0.1/x", "https://127.0.0.1:5002/x"):
        with pytest.raises(OutputRefused) as info:
            _get(url, http, ["127.0.0.1:5001"])
        assert info.value.code == "output_host_refused", url
    assert [str(r.url) for r in seen] == ["http://127.0.0.1:5001/a.png"]


def test_entry_without_port_allows_the_default_port_only(dns: dict[str, list[str]]) -> None:
    http, seen = _client()
    assert _get("https://replicate.delivery/a.png", http, ["replicate.delivery"]) == PNG
    assert _get("https://replicate.delivery:443/b.png", http, ["replicate.delivery"]) == PNG
    assert _get("https://pbxt.replicate.delivery/c.png", http, ["*.replicate.delivery"]) == PNG
    for url, allowed in (("https://replicate.delivery:8443/x", ["replicate.delivery"]),
                         ("http://replicate.delivery:443/x", ["replicate.delivery"]),
                         ("https://pbxt.replicate.delivery:8443/x", ["*.replicate.delivery"]),
                         ("http://127.0.0.1:5001/x", ["127.0.0.1"])):
        with pytest.raises(OutputRefused):
            _get(url, http, allowed, allow_private=True)
    assert len(seen) == 3


def test_wildcard_entry_with_port(dns: dict[str, list[str]]) -> None:
    http, seen = _client()
    assert _get("https://a.example.com:8443/x.png", http, ["*.example.com:8443"]) == PNG
    with pytest.raises(OutputRefused):
        _get("https://a.example.com/x.png", http, ["*.example.com:8443"])
    assert len(seen) == 1


def test_host_allowed_with_ports() -> None:
    assert host_allowed("127.0.0.1", ["127.0.0.1:5001"], port=5001, scheme="http")[0]
    assert not host_allowed("127.0.0.1", ["127.0.0.1:5001"], port=5002, scheme="http")[0]
    assert not host_allowed("127.0.0.1", ["127.0.0.1"], port=5001, scheme="http")[0]
    assert host_allowed("127.0.0.1", ["127.0.0.1"], port=80, scheme="http")[0]
    assert host_allowed("::1", ["[::1]:8080"], port=8080, scheme="http")[0]
    assert not host_allowed("::1", ["[::1]:8080"], port=80, scheme="http")[0]
    assert not host_allowed("::1", ["::1"], port=8080, scheme="http")[0]


def test_exact_host_name_is_still_checked_for_private_addresses(dns: dict[str, list[str]]) -> None:
    """Only an IP literal the operator wrote down skips the address check; a listed *name* may be
    re-pointed by whoever controls its DNS, so what it resolves to is still checked."""
    dns["files.example.com"] = ["127.0.0.1"]
    http, seen = _client()
    with pytest.raises(OutputRefused) as info:
        _get("https://files.example.com/x.png", http, ["files.example.com"])
    assert info.value.code == "output_host_refused" and seen == []
    assert _get("http://127.0.0.1:5001/x.png", http, ["127.0.0.1:5001"]) == PNG


# ---- finding 3: address classes ---------------------------------------------------------------------


@pytest.mark.parametrize("address", [
    "2002:7f00:1::1",      # 6to4 embedding 127.0.0.1
    "2002:a00:1::1",       # 6to4 embedding 10.0.0.1
    "2002:2278:102::1",    # 6to4 even with a public embedded v4: relayed, destination not ours to judge
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo (client 127.0.0.1 obfuscated)
    "fec0::1",             # deprecated site-local
    "192.0.0.8",           # IETF protocol assignments
    "192.0.0.170",
    "64:ff9b::7f00:1",     # NAT64 of 127.0.0.1
    "64:ff9b::a00:1",      # NAT64 of 10.0.0.1
    "::ffff:10.0.0.1",     # v4-mapped
    "::127.0.0.1",         # v4-compatible (deprecated)
    "100.64.0.1", "198.18.0.1", "192.0.2.1", "0.1.2.3", "255.255.255.255", "ff02::1", "fe80::1%eth0",
])
def test_non_public_addresses_are_refused(address: str, dns: dict[str, list[str]]) -> None:
    dns["cdn.replicate.delivery"] = [address]
    http, seen = _client()
    with pytest.raises(OutputRefused) as info:
        _get("https://cdn.replicate.delivery/x.png", http, ["*.replicate.delivery"])
    assert info.value.code == "output_host_refused"
    assert seen == []


@pytest.mark.parametrize("address", ["34.120.1.2", "8.8.8.8", "2606:4700::6810:84e5", "2a00:1450:4001::200e"])
def test_public_addresses_are_fetched(address: str, dns: dict[str, list[str]]) -> None:
    dns["cdn.replicate.delivery"] = [address]
    http, seen = _client()
    assert _get("https://cdn.replicate.delivery/x.png", http, ["*.replicate.delivery"]) == PNG
    assert len(seen) == 1


# ---- the same origin rule in the Replicate client -------------------------------------------------


@pytest.mark.parametrize(("url", "ok"), [
    ("https://api.replicate.com/v1/predictions/abc", True),
    ("https://api.replicate.com:443/v1/predictions/abc", True),  # the default port, written out
    ("https://api.replicate.com:8443/v1/predictions/abc", False),
    ("http://api.replicate.com:443/v1/predictions/abc", False),
    ("https://API.Replicate.com/v1/predictions/abc", True),
])
def test_replicate_client_urls_follow_the_origin_rule(url: str, ok: bool) -> None:
    from genqueue.worker.replicate import ReplicateClient
    from genqueue.worker.replicate.errors import ForbiddenURLError

    sent: list[httpx.Request] = []
    body = {"id": "abc", "status": "starting", "urls": {}}
    http = httpx.Client(transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200, json=body)))
    client = ReplicateClient(http, "https://api.replicate.com/v1")
    if ok:
        assert client.get(url).id == "abc" and len(sent) == 1
    else:
        with pytest.raises(ForbiddenURLError):
            client.get(url)
        assert sent == []
