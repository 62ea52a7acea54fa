"""PerThreadTransport: each thread gets its own pool; close() closes every one of them."""

from __future__ import annotations

import threading

import httpx

from worker.transport import PerThreadTransport


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
