"""The simulator's minimal webhook HTTP client against scripted raw HTTP servers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from genqueue.simulator.webhook_http import WebhookHTTP, WebhookHTTPError

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
# Scripted server: (index of the request on its connection) -> raw answer bytes, or None to close.
Script = Callable[[int], bytes | None]


class RawServer:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        index = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                self.requests.append(head + await reader.readexactly(length))
                answer = self.script(index)
                index += 1
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def run(script: Script, body: Callable[[WebhookHTTP, str, RawServer], Awaitable[None]]) -> RawServer:
    server = RawServer(script)

    async def main() -> None:
        srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        client = WebhookHTTP()
        try:
            await body(client, f"http://127.0.0.1:{port}", server)
        finally:
            await client.aclose()
            srv.close()

    asyncio.run(main())
    return server


async def post(client: WebhookHTTP, url: str, timeout: float = 2.0) -> int:
    return await client.post(url, b'{"a":1}', {"content-type": "application/json"}, timeout)


def test_request_format_and_keep_alive() -> None:
    async def body(client: WebhookHTTP, base: str, server: RawServer) -> None:
        assert await post(client, base + "/hook/\u00e9?job=4%202&x=y") == 200
        assert await post(client, base + "/hook") == 200

    server = run(lambda i: OK, body)
    assert server.connections == 1  # the second POST reused the connection
    first = server.requests[0].decode()
    assert first.startswith("POST /hook/%C3%A9?job=4%202&x=y HTTP/1.1\r\n")
    assert "\r\nHost: 127.0.0.1:" in first and "\r\nContent-Length: 7\r\n" in first
    assert first.endswith('\r\n\r\n{"a":1}')


@pytest.mark.parametrize(
    ("answer", "status", "reused"),
    [
        (b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n", 500, True),
        (b"HTTP/1.1 204 No Content\r\n\r\n", 204, True),
        (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK, 200, True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 200, False),
        (b"HTTP/1.0 202 Accepted\r\nContent-Length: 0\r\n\r\n", 202, False),
        (b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n", 307, True),
    ],
)
def test_answers(answer: bytes, status: int, reused: bool) -> None:
    async def body(client: WebhookHTTP, base: str, server: RawServer) -> None:
        assert await post(client, base + "/hook") == status
        assert await post(client, base + "/hook") == status

    server = run(lambda i: answer, body)
    assert server.connections == (1 if reused else 2)
    assert all(r.startswith(b"POST /hook ") for r in server.requests)  # a redirect is never followed


def test_body_until_close_is_not_reused() -> None:
    async def body(client: WebhookHTTP, base: str, server: RawServer) -> None:
        assert await post(client, base) == 200

    server = run(lambda i: b"HTTP/1.1 200 OK\r\n\r\nstreaming..." if i == 0 else None, body)
    assert server.requests[0].startswith(b"POST / HTTP/1.1")


def test_stale_pooled_connection_is_replaced() -> None:
    async def body(client: WebhookHTTP, base: str, server: RawServer) -> None:
        assert await post(client, base) == 200
        assert await post(client, base) == 200  # the server dropped the pooled connection

    server = run(lambda i: OK if i == 0 else None, body)
    assert server.connections == 2


def test_timeout_and_garbage() -> None:
    async def slow(client: WebhookHTTP, base: str, server: RawServer) -> None:
        with pytest.raises(TimeoutError):
            await post(client, base, timeout=0.2)

    run(lambda i: b"", slow)

    async def garbage(client: WebhookHTTP, base: str, server: RawServer) -> None:
        with pytest.raises(WebhookHTTPError):
            await post(client, base)

    run(lambda i: b"SSH-2.0-OpenSSH\r\n\r\n", garbage)
