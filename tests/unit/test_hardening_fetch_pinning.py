"""DNS rebinding: the address worker.fetch checked is the address the connection goes to.

Real sockets. The name's first lookup (the guard's) answers a "public" decoy; every later lookup
answers the loopback trap. Without pinning, httpx resolves again and reaches the trap; with the
worker's transport (make_transport) the connection goes to the checked decoy. Over TLS the
certificate is still verified for the host name, not for the pinned IP."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpcore
import pytest

from genqueue.worker import fetch
from genqueue.worker.fetch import OutputTransient, open_output
from genqueue.worker.transport import CookielessClient, make_transport

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class _Recording(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], name: str) -> None:
        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.hits.append(self.path)
                body = PNG + name.encode()
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(address, Handler)


def _serve(server: _Recording) -> _Recording:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def pair() -> Iterator[tuple[_Recording, _Recording]]:
    """A trap on 127.0.0.1:P and a decoy on 127.0.0.2:P (same port: the URL names one port)."""
    for _ in range(20):
        trap = _Recording(("127.0.0.1", 0), "trap")
        try:
            decoy = _Recording(("127.0.0.2", trap.server_address[1]), "decoy")
            break
        except OSError:
            trap.server_close()
    else:
        pytest.skip("no free port pair on 127.0.0.1/127.0.0.2")
    _serve(trap), _serve(decoy)
    try:
        yield trap, decoy
    finally:
        for s in (trap, decoy):
            s.shutdown()
            s.server_close()


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """name -> answers, one per lookup (the last one repeats); process-wide, so httpx sees it too."""
    real = socket.getaddrinfo
    table: dict[str, list[str]] = {}

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name in table:
            answers = table[name]
            address = answers.pop(0) if len(answers) > 1 else answers[0]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    # 127.0.0.2 stands in for a public address (no test may reach the internet).
    real_public = fetch._is_public
    monkeypatch.setattr(fetch, "_is_public", lambda a: a == "127.0.0.2" or real_public(a))
    return table


def test_rebinding_between_check_and_connect_cannot_reach_the_trap(
    pair: tuple[_Recording, _Recording], rebinding: dict[str, list[str]]
) -> None:
    trap, decoy = pair
    port = trap.server_address[1]
    rebinding["rebind.replicate.delivery"] = ["127.0.0.2", "127.0.0.1"]
    http = CookielessClient(transport=make_transport(), timeout=5.0)
    url = f"http://rebind.replicate.delivery:{port}/out.png"
    with open_output(url, http=http, allowed_hosts=[f"*.replicate.delivery:{port}"]) as src:
        body = b"".join(src.chunks)
    assert trap.hits == []
    assert decoy.hits == ["/out.png"] and body.endswith(b"decoy")


def test_pins_do_not_leak_to_other_requests(pair: tuple[_Recording, _Recording]) -> None:
    """Outside open_output the worker's transport resolves names as usual."""
    trap, _ = pair
    with CookielessClient(transport=make_transport(), timeout=5.0) as http:
        assert http.get(f"http://localhost:{trap.server_address[1]}/plain").status_code == 200
    assert trap.hits == ["/plain"]


def _cert(tmp: Path, dns_name: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "genqueue-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.9"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / f"{dns_name}.pem", tmp / f"{dns_name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.parametrize(("cert_name", "ok"), [("files.replicate.delivery", True), ("other.example", False)])
def test_tls_to_a_pinned_address_verifies_the_host_name(
    cert_name: str, ok: bool, tmp_path: Path, rebinding: dict[str, list[str]]
) -> None:
    cert, key = _cert(tmp_path, cert_name)
    server = _Recording(("127.0.0.2", 0), "tls")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    _serve(server)
    port = server.server_address[1]
    rebinding["files.replicate.delivery"] = ["127.0.0.2", "127.0.0.1"]
    http = CookielessClient(transport=make_transport(verify=ssl.create_default_context(cafile=str(cert))),
                            timeout=5.0)
    try:
        url = f"https://files.replicate.delivery:{port}/x.png"
        if ok:
            with open_output(url, http=http, allowed_hosts=[f"files.replicate.delivery:{port}"]) as src:
                assert b"".join(src.chunks).endswith(b"tls")
            assert server.hits == ["/x.png"]
        else:
            with pytest.raises(OutputTransient), open_output(
                url, http=http, allowed_hosts=[f"files.replicate.delivery:{port}"]
            ):
                pass
            assert server.hits == []
    finally:
        server.shutdown()
        server.server_close()


def test_pin_matches_the_name_as_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """An IDN host is resolved and pinned under its IDNA form, the name httpcore connects to."""
    from genqueue.worker import transport

    looked_up: list[str] = []
    real = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", int(port)))] if "xn--" in host \
            else real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    assert transport.pin_target(("xn--bcher-kva.example", 80, "192.0.2.7"), "xn--bcher-kva.example", 80) == "192.0.2.7"
    with pytest.raises(httpcore.ConnectError, match="does not match"):
        transport.pin_target(("xn--bcher-kva.example", 80, "192.0.2.7"), "proxy.internal", 3128)
    http = CookielessClient(transport=make_transport(), timeout=2)
    # Nothing listens on 127.0.0.1:9; the point is the name that was looked up.
    with pytest.raises(OutputTransient), open_output("http://bücher.example:9/x", http=http,
                                                     allowed_hosts=["bücher.example:9"], allow_private=True):
        pass
    assert looked_up[0] == "xn--bcher-kva.example"
