"""Unit tests for worker.fetch: data URIs, host allow-list, SSRF guards, redirects, limits, sniffing."""

from __future__ import annotations

import base64
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from genqueue.worker import fetch
from genqueue.worker.fetch import (
    OutputExpired,
    OutputRefused,
    OutputTransient,
    host_allowed,
    open_output,
    sniff_content_type,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 100
GIF = b"GIF89a" + b"\x00" * 20
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 20
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"></svg>'
DELIVERY = ["replicate.delivery", "*.replicate.delivery"]
PUBLIC_IP = "34.120.1.2"


class Recorder:
    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)


def client(answer: Callable[[httpx.Request], httpx.Response], **kw: Any) -> tuple[httpx.Client, Recorder]:
    rec = Recorder(answer)
    return httpx.Client(transport=httpx.MockTransport(rec), **kw), rec


def fixed(status: int = 200, content: bytes = PNG, headers: dict[str, str] | None = None) -> Any:
    return lambda request: httpx.Response(status, content=content, headers=headers or {})


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Fake resolver: hostname -> addresses; unknown names resolve to a public address."""
    table: dict[str, list[str]] = {}

    def fake(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host == "nxdomain.replicate.delivery":
            raise socket.gaierror("Name or service not known")
        addrs = table.get(host, [host] if host[0].isdigit() or ":" in host else [PUBLIC_IP])
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addrs]

    monkeypatch.setattr(fetch.socket, "getaddrinfo", fake)
    return table


def read_all(ref: str, http: httpx.Client, **kw: Any) -> tuple[str, bytes]:
    kw.setdefault("allowed_hosts", DELIVERY)
    with open_output(ref, http=http, **kw) as src:
        return src.content_type, b"".join(src.chunks)


# ---- data: URIs ---------------------------------------------------------------------------------


def test_data_uri_base64() -> None:
    http, rec = client(fixed())
    ref = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert read_all(ref, http) == ("image/png", PNG)
    assert rec.requests == []


def test_data_uri_percent_encoded() -> None:
    http, _ = client(fixed())
    assert read_all("data:text/plain;charset=utf-8,hello%20world%21", http) == ("text/plain", b"hello world!")
    assert read_all("data:,a%2Cb", http) == ("text/plain", b"a,b")


def test_data_uri_mislabelled_is_sniffed() -> None:
    http, _ = client(fixed())
    ref = "data:image/png;base64," + base64.b64encode(JPEG).decode()
    assert read_all(ref, http)[0] == "image/jpeg"
    ref = "data:application/octet-stream;base64," + base64.b64encode(WEBP).decode()
    assert read_all(ref, http)[0] == "image/webp"


def test_data_uri_errors() -> None:
    http, _ = client(fixed())
    with pytest.raises(OutputRefused) as bad:
        read_all("data:image/png;base64,@@@not-base64@@@", http)
    assert bad.value.code == "output_fetch_failed"
    with pytest.raises(OutputRefused) as nocomma:
        read_all("data:image/png;base64", http)
    assert nocomma.value.code == "output_fetch_failed"
    big = "data:image/png;base64," + base64.b64encode(PNG * 20).decode()
    with pytest.raises(OutputRefused) as large:
        read_all(big, http, max_bytes=1000)
    assert large.value.code == "output_too_large"


# ---- http(s) ------------------------------------------------------------------------------------


def test_allowed_host_streams_with_auth_header(dns: dict[str, Any]) -> None:
    http, rec = client(
        fixed(headers={"content-type": "image/png"}), headers={"Authorization": "Bearer r8_api"}
    )
    ctype, body = read_all("https://replicate.delivery/xezq/abc/out-0.png", http, auth_header="Bearer r8_out")
    assert (ctype, body) == ("image/png", PNG)
    req = rec.requests[0]
    assert str(req.url) == "https://replicate.delivery/xezq/abc/out-0.png"
    assert req.headers["authorization"] == "Bearer r8_out"


def test_client_default_authorization_is_never_sent(dns: dict[str, Any]) -> None:
    http, rec = client(fixed(), headers={"Authorization": "Bearer r8_api"})
    read_all("https://replicate.delivery/a.png", http)
    assert "authorization" not in rec.requests[0].headers


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/out.png",
        "https://replicate.delivery.evil.com/out.png",
        "https://notreplicate.delivery/out.png",
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
        "ftp://replicate.delivery/out.png",
    ],
)
def test_refused_host_is_never_contacted(url: str, dns: dict[str, Any]) -> None:
    http, rec = client(fixed())
    with pytest.raises(OutputRefused) as info:
        read_all(url, http)
    assert info.value.code == "output_host_refused"
    assert rec.requests == []


def test_wildcard_matches_subdomains_case_insensitively(dns: dict[str, Any]) -> None:
    http, rec = client(fixed())
    read_all("https://PBXT.Replicate.Delivery:443/x/out.png", http, allowed_hosts=["*.replicate.delivery"])
    assert rec.requests[0].url.host == "pbxt.replicate.delivery"
    with pytest.raises(OutputRefused):
        read_all("https://replicate.delivery/x.png", http, allowed_hosts=["*.replicate.delivery"])
    assert len(rec.requests) == 1


def test_host_allowed_rules() -> None:
    assert host_allowed("replicate.delivery", ["Replicate.Delivery:443"]) == (True, True)
    assert host_allowed("a.b.replicate.delivery", ["*.replicate.delivery"]) == (True, False)
    assert host_allowed("127.0.0.1", ["127.0.0.1"]) == (True, True)
    assert host_allowed("::1", ["[::1]"]) == (True, True)
    assert host_allowed("evilreplicate.delivery", ["*.replicate.delivery"]) == (False, False)


def test_wildcard_host_resolving_private_is_refused(dns: dict[str, Any]) -> None:
    dns["internal.replicate.delivery"] = ["10.0.0.5"]
    http, rec = client(fixed())
    with pytest.raises(OutputRefused) as info:
        read_all("https://internal.replicate.delivery/out.png", http)
    assert info.value.code == "output_host_refused"
    assert rec.requests == []


@pytest.mark.parametrize(
    "addr", ["127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "::1", "fd00::1"]
)
def test_private_addresses_refused_unless_allowed(addr: str, dns: dict[str, Any]) -> None:
    dns["files.example.com"] = [addr]
    http, rec = client(fixed())
    with pytest.raises(OutputRefused):
        read_all("http://files.example.com/o.png", http, allowed_hosts=["*.example.com"])
    assert rec.requests == []
    assert read_all(
        "http://files.example.com/o.png", http, allowed_hosts=["*.example.com"], allow_private=True
    )
    assert len(rec.requests) == 1


def test_mixed_public_and_private_resolution_is_refused(dns: dict[str, Any]) -> None:
    dns["cdn.example.com"] = [PUBLIC_IP, "127.0.0.1"]
    http, rec = client(fixed())
    with pytest.raises(OutputRefused):
        read_all("https://cdn.example.com/o.png", http, allowed_hosts=["*.example.com"])
    assert rec.requests == []


def test_exact_ip_entry_allows_local_simulator(dns: dict[str, Any]) -> None:
    http, rec = client(fixed(headers={"content-type": "image/png"}))
    ctype, body = read_all("http://127.0.0.1:5001/files/abc/out.png", http, allowed_hosts=["127.0.0.1:5001"])
    assert (ctype, body) == ("image/png", PNG)
    assert str(rec.requests[0].url) == "http://127.0.0.1:5001/files/abc/out.png"


def test_dns_failure_is_transient(dns: dict[str, Any]) -> None:
    http, rec = client(fixed())
    with pytest.raises(OutputTransient) as info:
        read_all("https://nxdomain.replicate.delivery/o.png", http)
    assert info.value.retryable and rec.requests == []


# ---- redirects ----------------------------------------------------------------------------------


def redirecting(hops: dict[str, str]) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        target = hops.get(str(request.url))
        if target:
            return httpx.Response(302, headers={"Location": target})
        return httpx.Response(200, content=PNG, headers={"content-type": "image/png"})

    return answer


def test_redirect_within_allowed_hosts_is_followed_without_cross_origin_auth(dns: dict[str, Any]) -> None:
    hops = {
        "https://replicate.delivery/a.png": "/b.png",
        "https://replicate.delivery/b.png": "https://pbxt.replicate.delivery/c.png?sig=secret",
    }
    http, rec = client(redirecting(hops))
    assert read_all("https://replicate.delivery/a.png", http, auth_header="Bearer r8_x")[1] == PNG
    assert [str(r.url) for r in rec.requests] == [
        "https://replicate.delivery/a.png",
        "https://replicate.delivery/b.png",
        "https://pbxt.replicate.delivery/c.png?sig=secret",
    ]
    assert [r.headers.get("authorization") for r in rec.requests] == ["Bearer r8_x", "Bearer r8_x", None]


def test_redirect_to_refused_host_is_refused(dns: dict[str, Any]) -> None:
    http, rec = client(redirecting({"https://replicate.delivery/a.png": "http://169.254.169.254/latest/"}))
    with pytest.raises(OutputRefused) as info:
        read_all("https://replicate.delivery/a.png", http)
    assert info.value.code == "output_host_refused"
    assert [str(r.url) for r in rec.requests] == ["https://replicate.delivery/a.png"]


def test_redirect_to_private_address_is_refused(dns: dict[str, Any]) -> None:
    dns["evil.replicate.delivery"] = ["127.0.0.1"]
    http, rec = client(redirecting({"https://replicate.delivery/a.png": "https://evil.replicate.delivery/x"}))
    with pytest.raises(OutputRefused):
        read_all("https://replicate.delivery/a.png", http)
    assert len(rec.requests) == 1


def test_redirect_loop_is_capped(dns: dict[str, Any]) -> None:
    http, rec = client(lambda r: httpx.Response(302, headers={"Location": str(r.url) + "x"}))
    with pytest.raises(OutputRefused) as info:
        read_all("https://replicate.delivery/a", http)
    assert info.value.code == "output_fetch_failed"
    assert len(rec.requests) == 6


# ---- statuses and limits ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [403, 404, 410])
def test_gone_outputs_are_expired(status: int, dns: dict[str, Any]) -> None:
    http, _ = client(fixed(status, b"<Error>AccessDenied</Error>"))
    with pytest.raises(OutputExpired) as info:
        read_all("https://replicate.delivery/x/out.png?token=secret", http)
    assert info.value.code == "output_expired" and not info.value.retryable
    assert "secret" not in str(info.value)


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_are_transient(status: int, dns: dict[str, Any]) -> None:
    http, _ = client(fixed(status, b""))
    with pytest.raises(OutputTransient) as info:
        read_all("https://replicate.delivery/x.png", http)
    assert info.value.retryable


def test_other_4xx_fails(dns: dict[str, Any]) -> None:
    http, _ = client(fixed(400, b""))
    with pytest.raises(OutputRefused) as info:
        read_all("https://replicate.delivery/x.png", http)
    assert info.value.code == "output_fetch_failed"


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
def test_transport_errors_are_transient(exc: Exception, dns: dict[str, Any]) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise exc

    http, _ = client(answer)
    with pytest.raises(OutputTransient):
        read_all("https://replicate.delivery/x.png", http)


def test_read_error_mid_stream_is_transient(dns: dict[str, Any]) -> None:
    class Broken(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield PNG[:600]
            yield b"x" * 70000
            raise httpx.ReadError("connection reset")

    http, _ = client(lambda r: httpx.Response(200, stream=Broken()))
    with pytest.raises(OutputTransient):
        read_all("https://replicate.delivery/x.png", http)


def test_content_length_over_cap_refused_up_front(dns: dict[str, Any]) -> None:
    http, _ = client(fixed(content=PNG * 100, headers={"content-length": str(len(PNG) * 100)}))
    with pytest.raises(OutputRefused) as info:
        read_all("https://replicate.delivery/x.png", http, max_bytes=1000)
    assert info.value.code == "output_too_large"


def test_streamed_bytes_over_cap_refused(dns: dict[str, Any]) -> None:
    class Endless(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield PNG
            for _ in range(1000):
                yield b"\x00" * 4096

    http, _ = client(lambda r: httpx.Response(200, stream=Endless()))
    with pytest.raises(OutputRefused) as info:
        read_all("https://replicate.delivery/x.png", http, max_bytes=100_000)
    assert info.value.code == "output_too_large"


def test_large_body_within_cap_is_streamed_in_chunks(dns: dict[str, Any]) -> None:
    payload = PNG + b"\x01" * 300_000
    http, _ = client(fixed(content=payload, headers={"content-type": "image/png"}))
    with open_output("https://replicate.delivery/x.png", http=http, allowed_hosts=DELIVERY) as src:
        chunks = list(src.chunks)
    assert b"".join(chunks) == payload and len(chunks) > 1


# ---- content type -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (GIF, "image/gif"),
        (WEBP, "image/webp"),
        (SVG, "image/svg+xml"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml"),
        (b"\xef\xbb\xbf  <svg/>", "image/svg+xml"),
        (b"<html>error</html>", None),
        (b"", None),
    ],
)
def test_sniff_content_type(data: bytes, expected: str | None) -> None:
    assert sniff_content_type(data) == expected


@pytest.mark.parametrize(
    ("header", "body", "expected"),
    [
        ("image/png", PNG, "image/png"),
        ("image/png", JPEG, "image/jpeg"),
        ("image/webp; charset=binary", SVG, "image/svg+xml"),
        (None, GIF, "image/gif"),
        ("application/octet-stream", WEBP, "image/webp"),
        ("application/octet-stream", b"\x00\x01", "application/octet-stream"),
        ("application/json", b'{"a": 1}', "application/json"),
        ("image/avif", b"\x00\x00\x00 ftypavif", "image/avif"),
    ],
)
def test_content_type_header_vs_sniffing(header: str | None, body: bytes, expected: str, dns: Any) -> None:
    http, _ = client(fixed(content=body, headers={"content-type": header} if header else {}))
    assert read_all("https://replicate.delivery/x", http)[0] == expected
