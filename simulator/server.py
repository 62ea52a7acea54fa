"""Serving the simulator with uvicorn: blocking ``serve`` and a background-thread handle."""

from __future__ import annotations

import threading
import time
from types import TracebackType

import uvicorn

from genqueue.simulator.app import create_app
from genqueue.simulator.config import SimConfig
from genqueue.simulator.state import SimState


def serve(host: str, port: int, config: SimConfig, log_level: str = "info") -> None:
    """Run the simulator in the foreground until interrupted."""
    uvicorn.run(create_app(config), host=host, port=port, log_level=log_level, lifespan="on",
                timeout_keep_alive=30, backlog=4096)


class SimHandle:
    """A simulator running in a daemon thread. ``base_url`` is e.g. ``http://127.0.0.1:43121``
    (use it as the Replicate base URL, without ``/v1``)."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, host: str, port: int,
                 state: SimState) -> None:
        self._server = server
        self._thread = thread
        self.host = host
        self.port = port
        self.state = state
        self.config = state.config
        self.base_url = f"http://{host}:{port}"

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> SimHandle:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def run_in_thread(config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0,
                  startup_timeout: float = 10.0) -> SimHandle:
    """Start a simulator on ``host:port`` (0 = any free port) and return once it accepts requests."""
    app = create_app(config)
    uv_config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                               timeout_keep_alive=30, backlog=4096)
    server = uvicorn.Server(uv_config)
    thread = threading.Thread(target=server.run, name=f"replicate-sim-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"simulator failed to start on {host}:{port}")
        time.sleep(0.01)
    bound = port
    for srv in server.servers:
        for sock in srv.sockets:
            bound = int(sock.getsockname()[1])
            break
    return SimHandle(server, thread, host, bound, app.sim)
