"""The worker's HTTP plumbing over real loopback HTTP: httpx's transport as the worker configures it
(keep-alive shared by threads, stale connections noticed, chunked and streamed bodies, failures with the
meaning the create path relies on) and CookielessClient (Set-Cookie answers are not kept)."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from genqueue.worker.transport import CookielessClient, make_transport


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: set[int] = set()

    def setup(self) -> None:
        super().setup()
        type(self).connections.add(self.client_address[1])

    def _send(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        for k, v in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/slow":
            time.sleep(1.0)
            self._send(200, b"late")
        elif self.path == "/close":
            self._send(200, b"bye", Connection="close")
            self.close_connection = True
        elif self.path == "/drop":  # as a server's keep-alive timeout does: no "Connection: close" first
            self._send(200, b"kept?")
            self.close_connection = True
        elif self.path == "/big":
            self._send(200, b"x" * 300_000)
        elif self.path == "/cookie":
            self._send(200, (self.headers.get("Cookie") or "-").encode(), Set_Cookie="session=fake-value; Path=/")
        else:
            self._send(200, json.dumps({"path": self.path, "auth": self.headers.get("Authorization")}).encode(),
                       Content_Type="application/json")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._send(201, body, Content_Type="application/json")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, ThreadingHTTPServer]]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    Handler.connections = set()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", srv
    finally:
        srv.shutdown()
        srv.server_close()


def client(base: str, **kw: object) -> httpx.Client:
    return CookielessClient(base_url=base, transport=make_transport(), headers={"Authorization": "Bearer fake"},
                            timeout=httpx.Timeout(5.0, connect=2.0), **kw)


def test_requests_and_keep_alive_shared_by_threads(server: tuple[str, ThreadingHTTPServer]) -> None:
    base, _ = server
    with client(base) as c:
        for i in range(5):
            assert c.post("/v1/predictions", json={"n": i}).json() == {"n": i}
            assert c.get(f"/g/{i}").json() == {"path": f"/g/{i}", "auth": "Bearer fake"}
        assert len(Handler.connections) == 1  # one connection, reused

        def work() -> None:
            for _ in range(3):
                c.get("/t")

        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert 2 <= len(Handler.connections) <= 4  # at most one more per concurrent thread


def test_chunked_streamed_and_closed_bodies(server: tuple[str, ThreadingHTTPServer]) -> None:
    base, _ = server
    with client(base) as c:
        assert c.get("/chunked").text == "hello chunked world"
        with c.stream("GET", "/big") as r:
            assert sum(len(chunk) for chunk in r.iter_raw()) == 300_000
        with c.stream("GET", "/big") as r:  # left unread: that connection must not be reused
            next(r.iter_raw())
        assert c.get("/close").text == "bye"  # Connection: close is honoured
        assert c.get("/after").json()["path"] == "/after"
        assert len(Handler.connections) == 3


def test_a_connection_the_server_dropped_is_not_reused(server: tuple[str, ThreadingHTTPServer]) -> None:
    base, _ = server
    with client(base) as c:
        assert c.get("/drop").text == "kept?"  # the server closes this keep-alive connection right after
        time.sleep(0.2)
        assert c.get("/next").json()["path"] == "/next"  # not RemoteProtocolError: a new connection
        assert len(Handler.connections) == 2


def test_failures_map_to_httpx_types(server: tuple[str, ThreadingHTTPServer]) -> None:
    base, _ = server
    with client(base) as c:
        with pytest.raises(httpx.ReadTimeout):
            c.get("/slow", timeout=httpx.Timeout(5.0, read=0.2))
        assert c.get("/fine").status_code == 200
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with client(f"http://127.0.0.1:{port}") as c, pytest.raises(httpx.ConnectError):
        c.get("/nobody-listens")  # ConnectError: the create path may safely send again
    with client(base) as c, pytest.raises(httpx.UnsupportedProtocol):
        c.get("ftp://127.0.0.1/x")


def test_cookieless_client_keeps_no_cookies(server: tuple[str, ThreadingHTTPServer]) -> None:
    base, _ = server
    with httpx.Client(base_url=base) as plain:  # what it turns off: httpx keeps and sends back the cookie
        plain.get("/cookie")
        assert plain.get("/cookie").text == "session=fake-value"
    with client(base) as c:
        first = c.get("/cookie")
        assert first.headers["set-cookie"].startswith("session=")
        assert c.get("/cookie").text == "-" and not c.cookies
        with pytest.raises(TypeError):
            c.cookies = {"a": "b"}  # type: ignore[assignment]


def _self_signed(tmp: Path) -> tuple[Path, Path]:
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
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_is_verified(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    srv.socket = server_ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"https://127.0.0.1:{srv.server_address[1]}"
    try:
        trusting = ssl.create_default_context(cafile=str(cert))
        with CookielessClient(base_url=base, transport=make_transport(verify=trusting)) as c:
            assert c.get("/tls").json()["path"] == "/tls"
            assert c.get("/tls2").json()["path"] == "/tls2"
        with CookielessClient(base_url=base, transport=make_transport()) as c, pytest.raises(httpx.ConnectError):
            c.get("/untrusted")  # the default context (httpx's: certifi) refuses a self-signed certificate
    finally:
        srv.shutdown()
        srv.server_close()
