"""PerThreadTransport: each thread gets its own pool; close() closes every one of them. CookielessClient:
Set-Cookie answers (over real loopback HTTP) are not kept, so nothing is sent back."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from worker.transport import CookielessClient, PerThreadTransport


class CountingTransport(httpx.BaseTransport):
    def __init__(self) -> None:
        self.requests = 0
        self.closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return httpx.Response(200, text=threading.current_thread().name)

    def close(self) -> None:
        self.closed = True


def test_one_transport_per_thread_reused_within_the_thread_and_all_closed() -> None:
    made: list[CountingTransport] = []

    def factory() -> CountingTransport:
        made.append(CountingTransport())
        return made[-1]

    transport = PerThreadTransport(factory)
    client = httpx.Client(transport=transport, base_url="http://sim.invalid")
    answers: list[str] = []

    def work() -> None:
        for _ in range(3):
            answers.append(client.get("/x").text)

    threads = [threading.Thread(target=work, name=f"t{i}") for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 4 and all(t.requests == 3 for t in made)
    assert sorted(answers) == sorted([f"t{i}" for i in range(4) for _ in range(3)])
    client.close()
    assert all(t.closed for t in made)


class CookieSetter(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (self.headers.get("Cookie") or "-").encode()
        self.send_response(200)
        self.send_header("Set-Cookie", "session=fake-session-value; Path=/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def cookie_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), CookieSetter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_cookieless_client_keeps_no_cookies(cookie_server: str) -> None:
    with httpx.Client() as plain:  # the behaviour it turns off: httpx keeps and sends back the cookie
        plain.get(cookie_server)
        assert plain.get(cookie_server).text == "session=fake-session-value"
    with CookielessClient() as client:
        first = client.get(cookie_server)
        assert first.status_code == 200 and first.headers["set-cookie"].startswith("session=")
        assert client.get(cookie_server).text == "-" and not client.cookies
        with pytest.raises(TypeError):
            client.cookies = {"a": "b"}  # type: ignore[assignment]
