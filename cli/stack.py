"""A small process supervisor for one machine: `genqueue up`, the demo, tests and benchmarks.

Each component runs as its own `python -m genqueue ...` process (as it would on separate hosts); a
crashed child is restarted with back-off; SIGINT/SIGTERM stop all children gracefully.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from genqueue.core.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def genqueue_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "genqueue", *args]


def wait_http(url: str, timeout: float = 30.0) -> bool:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    _fh: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        out: int | IO[bytes] | None = None
        if self.log is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.log.open("ab")
            out = self._fh
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT if out else None,
                                     start_new_session=True)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive and self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self, grace: float = 15.0) -> None:
        if self.proc is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(5)
        if self._fh:
            self._fh.close()


class Stack:
    def __init__(self, env: dict[str, str], log_dir: Path | None = None) -> None:
        self.env = env
        self.log_dir = log_dir
        self.children: dict[str, Child] = {}

    def add(self, name: str, *args: str) -> Child:
        log = self.log_dir / f"{name}.log" if self.log_dir else None
        child = Child(name, genqueue_argv(*args), dict(self.env), log)
        self.children[name] = child
        child.start()
        return child

    def restart_dead(self) -> list[str]:
        restarted = []
        for child in self.children.values():
            if not child.alive:
                child.restarts += 1
                time.sleep(min(10.0, 0.5 * 2 ** min(child.restarts, 5)))
                child.start()
                restarted.append(child.name)
        return restarted

    def stop(self) -> None:
        for child in reversed(list(self.children.values())):
            child.signal(signal.SIGTERM)
        for child in reversed(list(self.children.values())):
            child.stop()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_up(settings: Settings, *, host: str, port: int, concurrency: int, with_simulator: bool) -> None:
    from genqueue.bootstrap import Root
    from genqueue.cli.context import die
    from genqueue.cli.embedded_redis import ensure_redis
    from genqueue.core.crypto import SecretsError

    env = dict(os.environ)
    redis_proc = ensure_redis(settings.redis_url, settings.data_dir, allowed=not settings.redis_url_given)
    root = Root(settings)
    try:
        root.migrate()
    except SecretsError as exc:
        die(str(exc))
    finally:
        root.close()
    stack = Stack(env)
    if with_simulator:
        sim_port = free_port()
        env.update(REPLICATE_BASE_URL=f"http://127.0.0.1:{sim_port}/v1", REPLICATE_API_TOKEN="r8_sim_fake_token",
                   OUTPUT_ALLOWED_HOSTS=f"127.0.0.1:{sim_port}", OUTPUT_ALLOW_PRIVATE="true")
        stack.add("simulator", "simulator", "--port", str(sim_port))
    stack.add("api", "api", "--host", host, "--port", str(port))
    stack.add("worker", "worker", "--concurrency", str(concurrency))
    stack.add("beat", "beat")
    stopping = False

    def _stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"genqueue up: api on http://{host}:{port} (docs at /docs); Ctrl-C stops", flush=True)
    try:
        while not stopping:
            for name in stack.restart_dead():
                print(f"genqueue up: {name} exited; restarted", flush=True)
            time.sleep(0.5)
    finally:
        stack.stop()
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
