"""A callback receiver for the tests: a tiny threaded HTTP server on loopback that, for each
`webhook-id`, answers 500 `fail` times, then drops `drop` connections (closes them without an answer),
then 200; it records every request, and the bodies it accepted."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Seen:
    headers: dict[str, str]
    body: bytes
    answer: str  # "500" | "drop" | "200"
    at: float


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


class CallbackReceiver:
    def __init__(self, *, fail: int = 5, drop: int = 2) -> None:
        self.fail, self.drop = fail, drop
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    n = sum(1 for s in receiver.seen if s.headers.get("webhook-id") == headers.get("webhook-id"))
                    answer = "500" if n < receiver.fail else "drop" if n < receiver.fail + receiver.drop else "200"
                    receiver.seen.append(Seen(headers, body, answer, time.time()))
                if answer == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(int(answer))
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def requests(self) -> list[Seen]:
        with self.lock:
            return list(self.seen)

    def accepted(self) -> list[Seen]:
        return [s for s in self.requests() if s.answer == "200"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
