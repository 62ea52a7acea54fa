"""Outbound requests (SSRF): outputs are fetched only from OUTPUT_ALLOWED_HOSTS, private/loopback/
link-local/metadata addresses are refused unless explicitly allowed, redirects obey the same rules,
downloads are capped in size and time, and the Replicate client never follows a URL off its origin.

Every "refused" case uses real sockets and a trap server that records every request it gets: the
trap's request list stays empty, so "refused before any connection" is proven, not assumed.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sec_support import PNG, TrapServer

from genqueue.simulator import render as sim_render
from genqueue.simulator.config import SimConfig
from genqueue.simulator.server import run_in_thread
from genqueue.worker import fetch
from genqueue.worker.fetch import OutputRefused, OutputTransient, open_output
from genqueue.worker.replicate import ReplicateClient
from genqueue.worker.replicate.errors import ForbiddenURLError
from tests.support.pipeline import pipeline

DELIVERY = ["replicate.delivery", "*.replicate.delivery"]


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    # The worker's download client (worker/runtime.py): no redirects followed by httpx itself.
    with httpx.Client(timeout=httpx.Timeout(5.0, connect=2.0), follow_redirects=False) as c:
        yield c


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Process-wide fake names -> addresses (both the guard's lookup and httpx's connect use it), so a
    name mapped to 127.0.0.1 really reaches the trap if the guard lets it through."""
    real = socket.getaddrinfo
    table: dict[str, list[str]] = {}

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, bytes):
            host = host.decode()
        if host in table:
            out = []
            for a in table[host]:
                fam = socket.AF_INET6 if ":" in a else socket.AF_INET
                addr = (a, int(port), 0, 0) if fam == socket.AF_INET6 else (a, int(port))
                out.append((fam, socket.SOCK_STREAM, 6, "", addr))
            return out
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(fetch.socket, "getaddrinfo", fake)
    return table


def fetch_all(url: str, http: httpx.Client, **kw: Any) -> tuple[str, bytes]:
    with open_output(url, http=http, **kw) as src:
        return src.content_type, b"".join(src.chunks)


def refused(url: str, http: httpx.Client, **kw: Any) -> OutputRefused:
    with pytest.raises(OutputRefused) as info:
        fetch_all(url, http, **kw)
    return info.value


# ---- allow-list and address guard ----------------------------------------------------------------


def test_host_not_on_allow_list_is_refused_without_contact(trap: TrapServer, http: httpx.Client) -> None:
    for url in (trap.url("localhost", "/out.png"), trap.url("127.0.0.1", "/out.png"),
                f"http://[::1]:{trap.port}/out.png", f"http://0.0.0.0:{trap.port}/x", f"http://2130706433:{trap.port}/x",
                f"http://0x7f000001:{trap.port}/x", f"http://127.1:{trap.port}/x",
                f"http://replicate.delivery@127.0.0.1:{trap.port}/x",
                "http://169.254.169.254/latest/meta-data/iam/", "http://metadata.google.internal/computeMetadata/v1/",
                "http://10.0.0.1/x", "http://192.168.1.1/x", "http://[fd00::1]/x", "http://[fe80::1]/x",
                "file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO", "ftp://replicate.delivery/x"):
        err = refused(url, http, allowed_hosts=DELIVERY)
        assert err.code in ("output_host_refused", "output_fetch_failed"), (url, err.code)
    # Even with private addresses allowed, the allow-list still rules.
    err = refused(trap.url("localhost", "/out.png"), http, allowed_hosts=[f"127.0.0.1:{trap.port}"], allow_private=True)
    assert err.code == "output_host_refused"
    assert trap.hits == []


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "10.1.2.3", "172.16.0.9",
                                     "192.168.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "fd00::1",
                                     "fe80::1", "224.0.0.1", "240.0.0.1"])
def test_allowed_name_resolving_to_private_address_is_refused(address: str, trap: TrapServer, http: httpx.Client,
                                                              dns: dict[str, list[str]]) -> None:
    dns["evil.replicate.delivery"] = [address]
    err = refused(f"http://evil.replicate.delivery:{trap.port}/out.png", http,
                  allowed_hosts=[f"*.replicate.delivery:{trap.port}"])
    assert err.code == "output_host_refused"
    assert trap.hits == []


def test_one_private_address_among_public_ones_is_refused(trap: TrapServer, http: httpx.Client,
                                                           dns: dict[str, list[str]]) -> None:
    dns["mixed.replicate.delivery"] = ["34.120.1.2", "127.0.0.1"]
    assert refused(f"http://mixed.replicate.delivery:{trap.port}/x", http,
                   allowed_hosts=[f"*.replicate.delivery:{trap.port}"]).code == \
        "output_host_refused"
    assert trap.hits == []


def test_private_hosts_are_fetched_only_when_explicitly_allowed(trap: TrapServer, http: httpx.Client,
                                                                dns: dict[str, list[str]]) -> None:
    """Positive controls: the same trap *is* reached when the configuration allows it, so the refusals
    above are the guard's doing, not an unreachable server."""
    dns["lo.replicate.delivery"] = ["127.0.0.1"]
    assert fetch_all(trap.url("127.0.0.1", "/a.png"), http,
                     allowed_hosts=[f"127.0.0.1:{trap.port}"]) == ("image/png", PNG)
    assert fetch_all(f"http://lo.replicate.delivery:{trap.port}/b.png", http,
                     allowed_hosts=[f"*.replicate.delivery:{trap.port}"],
                     allow_private=True)[1] == PNG
    assert [h.path for h in trap.hits] == ["/a.png", "/b.png"]


# ---- redirects -------------------------------------------------------------------------------------


def _redirect_to(target: str) -> Callable[[str], tuple[int, dict[str, str], bytes]]:
    return lambda path: (302, {"Location": target}, b"")


@pytest.mark.parametrize("target", ["http://localhost:{trap}/stolen", "http://169.254.169.254/latest/meta-data/",
                                    "file:///etc/passwd", "http://[::1]:{trap}/x",
                                    "http://user@localhost:{trap}/x"])
def test_redirect_from_allowed_host_to_refused_host_is_refused(target: str, trap: TrapServer,
                                                               make_trap: Any, http: httpx.Client) -> None:
    hop = make_trap(_redirect_to(target.format(trap=trap.port)))
    err = refused(hop.url("127.0.0.1", "/out.png"), http, allowed_hosts=[f"127.0.0.1:{hop.port}"])
    assert err.code == "output_host_refused"
    assert len(hop.hits) == 1 and trap.hits == []


def test_redirect_within_rules_is_followed_but_auth_stays_on_first_origin(trap: TrapServer, make_trap: Any,
                                                                          http: httpx.Client) -> None:
    hop = make_trap(_redirect_to(trap.url("127.0.0.1", "/final.png?sig=abc")))
    got = fetch_all(hop.url("127.0.0.1", "/out.png"), http,
                    allowed_hosts=[f"127.0.0.1:{hop.port}", f"127.0.0.1:{trap.port}"],
                    auth_header="Bearer r8_must_not_travel")
    assert got == ("image/png", PNG)
    assert hop.hits[0].headers.get("authorization") == "Bearer r8_must_not_travel"
    assert [h.path for h in trap.hits] == ["/final.png?sig=abc"]
    assert "authorization" not in trap.hits[0].headers and "cookie" not in trap.hits[0].headers


def test_redirect_chain_is_capped(make_trap: Any, http: httpx.Client) -> None:
    loop = make_trap(lambda path: (302, {"Location": path + "x"}, b""))
    assert refused(loop.url("127.0.0.1", "/r"), http,
                   allowed_hosts=[f"127.0.0.1:{loop.port}"]).code == "output_fetch_failed"
    assert len(loop.hits) == fetch.MAX_REDIRECTS + 1


# ---- size, time, content type ----------------------------------------------------------------------


def test_declared_size_over_cap_is_refused(make_trap: Any, http: httpx.Client) -> None:
    big = make_trap(lambda path: (200, {"Content-Type": "image/png"}, PNG + b"\x00" * 200_000))
    assert refused(big.url(), http,
                   allowed_hosts=[f"127.0.0.1:{big.port}"], max_bytes=100_000).code == "output_too_large"


def test_undeclared_size_over_cap_is_refused_while_streaming(make_trap: Any, http: httpx.Client) -> None:
    big = make_trap(lambda path: (200, {"Content-Type": "image/png", "X-Drip": "0"}, PNG + b"\x00" * 300_000))
    assert refused(big.url(), http,
                   allowed_hosts=[f"127.0.0.1:{big.port}"], max_bytes=100_000).code == "output_too_large"


def test_stalled_download_times_out(make_trap: Any, http: httpx.Client) -> None:
    slow = make_trap(lambda path: (200, {"Content-Type": "image/png", "X-Drip": "3"}, PNG * 4))
    t0 = time.monotonic()
    with pytest.raises(OutputTransient):
        fetch_all(slow.url(), http, allowed_hosts=[f"127.0.0.1:{slow.port}"], timeout=0.5)
    assert time.monotonic() - t0 < 5


def test_slow_drip_download_is_capped_in_total_time(make_trap: Any, http: httpx.Client) -> None:
    """`timeout` must bound the whole download, not only each read: a host that sends 256 bytes every
    0.25 s never trips a per-read timeout and would otherwise hold a worker slot indefinitely."""
    drip = make_trap(lambda path: (200, {"Content-Type": "image/png", "X-Drip": "0.25"}, PNG + b"\x00" * 8000))
    t0 = time.monotonic()
    with pytest.raises((OutputTransient, OutputRefused)):
        fetch_all(drip.url(), http, allowed_hosts=[f"127.0.0.1:{drip.port}"], timeout=2.0)
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize(("declared", "body"), [("image/png", b"<html><script>alert(1)</script></html>"),
                                                ("image/jpeg", b"%PDF-1.7 not an image")])
def test_declared_image_type_is_checked_against_the_bytes(declared: str, body: bytes, make_trap: Any,
                                                          http: httpx.Client) -> None:
    """A file whose bytes are not the image its header claims must not be stored under that type."""
    lying = make_trap(lambda path: (200, {"Content-Type": declared}, body))
    try:
        ctype, _ = fetch_all(lying.url(), http, allowed_hosts=[f"127.0.0.1:{lying.port}"])
    except OutputRefused:
        return
    assert ctype != declared


def test_mislabelled_image_gets_its_real_type(make_trap: Any, http: httpx.Client) -> None:
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 64
    lying = make_trap(lambda path: (200, {"Content-Type": "image/png"}, jpeg))
    assert fetch_all(lying.url(), http, allowed_hosts=[f"127.0.0.1:{lying.port}"])[0] == "image/jpeg"


# ---- the Replicate client ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "https://evil.example/v1/predictions/abc",
    "http://api.replicate.com/v1/predictions/abc",  # scheme downgrade
    "https://api.replicate.com:8443/v1/predictions/abc",  # other port
    "https://api.replicate.com.evil.example/v1/predictions/abc",
    "https://user:pw@api.replicate.com/v1/predictions/abc",
    "https://api.replicate.com/v2/predictions/abc",  # outside the base path
    "https://api.replicate.com/v1x/predictions/abc",
    "http://169.254.169.254/latest/meta-data/",
    "not a url",
])
def test_replicate_client_refuses_urls_off_its_origin_without_sending(url: str) -> None:
    sent: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200, json={}))
    http = httpx.Client(transport=transport, headers={"Authorization": "Bearer r8_secret"})
    client = ReplicateClient(http, "https://api.replicate.com/v1")
    for call in (lambda: client.get(url), lambda: client.cancel(url), lambda: client.list(url=url)):
        with pytest.raises(ForbiddenURLError):
            call()
    assert sent == []


def test_replicate_client_never_sends_the_token_to_a_trap(trap: TrapServer) -> None:
    http = httpx.Client(headers={"Authorization": "Bearer r8_secret_token"}, timeout=5)
    client = ReplicateClient(http, "http://127.0.0.1:9/v1")  # nothing listens on the discard port
    for url in (trap.url("127.0.0.1", "/v1/predictions/abc"), trap.url("localhost", "/v1/predictions/abc")):
        with pytest.raises(ForbiddenURLError):
            client.get(url)
        with pytest.raises(ForbiddenURLError):
            client.cancel(url + "/cancel")
    assert trap.hits == []


# ---- the whole pipeline --------------------------------------------------------------------------


def test_pipeline_job_with_refused_output_fails_and_trap_is_untouched(
    tmp_path: Path, sqlite_url: str, sec_redis_url: str, trap: TrapServer, make_trap: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Real worker processes and the simulator: the prediction's output URL points at the trap under a
    host name that is not allowed (directly, or by a redirect from an allowed host, or at the cloud
    metadata address). Each job fails with `output_refused`; the trap gets 0 requests."""
    hop = make_trap(_redirect_to(trap.url("localhost", "/via-redirect.png")))
    urls = {
        "direct": trap.url("localhost", "/direct.png"),
        "redirect": hop.url("127.0.0.1", "/hop.png"),
        "metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "v6": f"http://[::1]:{trap.port}/v6.png",
    }
    real_file_url = sim_render.file_url

    def evil_file_url(base: str, rec: Any, index: int) -> str:
        kind = str(rec.input.get("prompt", "")).split(" ", 1)[0]
        return urls.get(kind, real_file_url(base, rec, index))

    monkeypatch.setattr(sim_render, "file_url", evil_file_url)
    sim = run_in_thread(SimConfig(start_delay=0.1, predict_seconds=0.2))
    sim_host = sim.base_url.split("//", 1)[1].split("/", 1)[0]  # 127.0.0.1:<port>: entries name the port
    try:
        with pipeline(tmp_path, sqlite_url, sec_redis_url, sim.base_url, concurrency=2,
                      env_extra={"OUTPUT_ALLOWED_HOSTS": f"{sim_host},127.0.0.1:{hop.port}"}) as p:
            ids = {kind: p.submit(1, prompt=f"{kind} {uuid.uuid4().hex}")[0] for kind in urls}
            control = p.submit(1)[0]  # a normal job on the same run still succeeds
            jobs = {j.id: j for j in p.wait([*ids.values(), control], timeout=90)}
    finally:
        sim.stop()
    for kind, jid in ids.items():
        job = jobs[jid]
        assert (job.status, job.error_code) == ("failed", "output_refused"), (kind, job.status, job.error_message)
        assert job.error_message and "output_host_refused" in job.error_message
        assert job.outputs == []
    assert jobs[control].status == "succeeded", jobs[control].error_message
    assert trap.hits == []
    assert [h.path for h in hop.hits] == ["/hop.png"]
