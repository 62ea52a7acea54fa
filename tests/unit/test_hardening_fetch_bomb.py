"""Decompression bombs: a tiny compressed body must never be inflated in worker memory.

A real loopback HTTP server sends a gzip bomb (also stacked, ``gzip, gzip``). Outputs are asked for
with ``Accept-Encoding: identity`` and an encoded answer is refused without being decoded, so the peak
memory of the download stays far below the decoded size. The Replicate client asks for identity
too and caps the JSON body it reads."""

from __future__ import annotations

import gzip
import threading
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from genqueue.worker.fetch import OutputRefused, open_output
from genqueue.worker.replicate import ReplicateClient
from genqueue.worker.replicate.errors import PermanentError
from genqueue.worker.transport import CookielessClient, make_transport

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
MiB = 1024 * 1024
DECODED = 64 * MiB


def _bomb(layers: int) -> bytes:
    body = PNG + b"\x00" * (DECODED - len(PNG))
    for _ in range(layers):
        body = gzip.compress(body, compresslevel=9)
    return body


BOMBS = {1: _bomb(1), 2: _bomb(2)}
# Built once here: tracemalloc counts every thread, the server's too.
JSON_BOMB = gzip.compress(b'{"id": "p1", "pad": "' + b"a" * DECODED + b'"}')


class _Server:
    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.seen.append({k.lower(): v for k, v in self.headers.items()})
                if self.path.startswith("/bomb"):
                    layers = int(self.path.rsplit("/", 1)[1])
                    body, ctype = BOMBS[layers], "image/png"
                    encoding = ", ".join(["gzip"] * layers)
                elif self.path.startswith("/v1/"):
                    body, ctype, encoding = JSON_BOMB, "application/json", "gzip"
                else:
                    body, ctype, encoding = PNG, "image/png", ""
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                if encoding:
                    self.send_header("Content-Encoding", encoding)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    try:
        yield srv
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()


def _peak(fn: Any) -> tuple[int, BaseException | None]:
    tracemalloc.start()
    err: BaseException | None = None
    try:
        fn()
    except Exception as exc:  # the outcome is checked by the caller
        err = exc
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, err


@pytest.mark.parametrize("layers", [1, 2])
def test_gzip_bomb_output_is_not_inflated(layers: int, server: _Server) -> None:
    http = CookielessClient(transport=make_transport(), timeout=5.0)
    url = f"http://127.0.0.1:{server.port}/bomb/{layers}"

    def download() -> None:
        with open_output(url, http=http, allowed_hosts=[f"127.0.0.1:{server.port}"], max_bytes=MiB) as src:
            for _ in src.chunks:
                pass

    peak, err = _peak(download)
    print(f"layers={layers} compressed={len(BOMBS[layers])} B decoded={DECODED} B peak={peak / MiB:.1f} MiB")
    assert isinstance(err, OutputRefused), err
    assert peak < 4 * MiB, f"peak {peak / MiB:.1f} MiB"
    assert server.seen[-1]["accept-encoding"] == "identity"
    # Positive control: an unencoded output from the same server is fetched.
    with open_output(f"http://127.0.0.1:{server.port}/plain.png", http=http,
                     allowed_hosts=[f"127.0.0.1:{server.port}"]) as src:
        assert b"".join(src.chunks) == PNG


def test_replicate_client_json_is_capped_and_not_inflated(server: _Server) -> None:
    base = f"http://127.0.0.1:{server.port}/v1"
    http = CookielessClient(base_url=base, transport=make_transport(), timeout=5.0)
    client = ReplicateClient(http, base)
    peak, err = _peak(lambda: client.get(f"{base}/predictions/p1"))
    print(f"replicate json peak={peak / MiB:.1f} MiB")
    assert isinstance(err, PermanentError), err
    assert peak < 4 * MiB
    assert server.seen[-1]["accept-encoding"] == "identity"


def test_replicate_client_json_body_cap() -> None:
    big = b'{"id": "p1", "status": "succeeded", "output": "data:image/png;base64,' + b"A" * (2 * MiB) + b'"}'
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, content=big)))
    with pytest.raises(PermanentError) as info:
        ReplicateClient(http, "https://api.replicate.com/v1", max_body_bytes=MiB).get_by_id("p1")
    assert "over" in str(info.value)
    assert ReplicateClient(http, "https://api.replicate.com/v1", max_body_bytes=4 * MiB).get_by_id("p1").id == "p1"
