"""Several hosts: a worker on a "host" of its own (a network namespace, tests/support/netns.py) next to
a worker, the beat and every service on this machine, sharing one PostgreSQL, one Redis, one S3 store
(SeaweedFS: a file:// store would not be shared between hosts) and the Replicate simulator.

* the other host partitioned from Redis for 30 s (its veth link to Redis goes down: packets vanish,
  no RST), while the worker here keeps running;
* the same host partitioned from PostgreSQL for 30 s;
* the same host's clock 90 s ahead (libfaketime), no partition.

Every job is checked against the simulator's record (terminal, the right outcome, outputs whose stored
bytes hash to the simulator's, one prediction per job). Recovery (fault cleared -> the next progress
of the jobs it caught) and what a skewed clock gets wrong are printed, never asserted (noisy machine).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import make_url, select
from sqlalchemy.orm import selectinload

from genqueue.bootstrap import Root
from genqueue.cli.stack import Child, Stack, free_port, genqueue_argv, wait_http
from genqueue.intake import JobRequest
from genqueue.models.status import TERMINAL_NAMES as TERMINAL
from genqueue.models.tables import Job
from genqueue.simulator.store import fingerprint
from genqueue.storage import build_s3_client
from tests.chaos.chaos import ProgressLog, recovery_times
from tests.support.aof_redis import AofRedis
from tests.support.netns import NetnsHost, Relay, netns_unavailable
from tests.support.pipeline import settings_from
from tests.support.seaweed import seaweed_s3

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

VERSION = "jigsawstack/image-generation:43d5bce2e1c97fa1e7d8996187a85cd5c882787989091af3b135c7a16ca23b79"
FAKE_API_KEY = "sk_test_fake_not_a_real_key"
SIM_TOKEN = "r8_sim_fake_token"
# The simulator listens on a veth address, not loopback, so its /_sim/ routes need a token of their own.
SIM_ADMIN_TOKEN = "sim_admin_fake_not_a_secret"
PARTITION_SECONDS = 30.0
SKEW = "+90s"
# Debian's libfaketime package, wherever the multiarch directory is.
LIBFAKETIME = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))),
                   Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"))
DRAIN_TIMEOUT = 150.0  # after the last fault clears
# With a clock 90 s ahead, a job waits ~90 s each time a correct host takes over a step after the skewed
# one wrote its check time (the steps take "now" from their host's clock; see _skew_report): up to three
# waits per job were seen, so fewer jobs and a budget for three.
SKEW_WAVES = (16, 8, 0)
SKEW_DRAIN_TIMEOUT = 300.0
# Mild faults, so the usual retry paths run across hosts too; no dropped connections or lost creates:
# the adoption path has runs of its own (tests/chaos/test_chaos.py).
SIM_KNOBS: dict[str, Any] = dict(start_delay=0.3, predict_seconds=2.0, jitter=1.0, fail_rate=0.05, fault_429=0.03,
                                 fault_5xx=0.02, fault_first_download=0.03, output_mode="url")


# --- the deployment: services here, one worker host in a namespace -------------------------------------


@dataclass
class Deployment:
    host: NetnsHost
    redis: AofRedis
    db_url: str  # as processes on this machine reach it
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    bucket: str
    sim_url: str  # bound on the host end of the "rest" link: both hosts reach it at the same address
    relays: dict[str, Relay]
    workdir: Path
    secrets_key: str = field(default_factory=lambda: Fernet.generate_key().decode())

    def env(self, *, other_host: bool) -> dict[str, str]:
        """A process's environment on this machine, or on the other host (services through its links)."""
        redis_url, db_url, s3 = f"{self.redis.url}/0", self.db_url, self.s3_endpoint
        if other_host:
            redis_url = f"redis://{self.relays['redis'].netloc}/0"
            db_url = make_url(self.db_url).set(host=self.relays["pg"].host, port=self.relays["pg"].port) \
                .render_as_string(hide_password=False)
            s3 = f"http://{self.relays['s3'].netloc}"
        env = dict(os.environ)
        env.update(
            GENQUEUE_DATA_DIR=str(self.workdir / ("data-other" if other_host else "data-main")),
            DATABASE_URL=db_url, REDIS_URL=redis_url, STORAGE_URL=f"s3://{self.bucket}/outputs",
            S3_ENDPOINT_URL=s3, AWS_ACCESS_KEY_ID=self.s3_access_key, AWS_SECRET_ACCESS_KEY=self.s3_secret_key,
            AWS_REGION="us-east-1", REPLICATE_BASE_URL=f"{self.sim_url}/v1", REPLICATE_API_TOKEN=SIM_TOKEN,
            OUTPUT_ALLOWED_HOSTS=urlsplit(self.sim_url).netloc, OUTPUT_ALLOW_PRIVATE="true",
            # One key for the fleet, as every host of a real deployment is given (no key file is shared).
            SECRETS_KEY=self.secrets_key, GENQUEUE_LOG_LEVEL="INFO",
        )
        return env

    def s3_client(self) -> S3Client:
        return build_s3_client(endpoint_url=self.s3_endpoint, aws_access_key_id=self.s3_access_key,
                               aws_secret_access_key=self.s3_secret_key)


@pytest.fixture
def deployment(tmp_path: Path, pg_url: str) -> Iterator[Deployment]:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(f"several-hosts tests need network namespaces: {reason}")
    with contextlib.ExitStack() as stack:
        host = stack.enter_context(NetnsHost(["redis", "pg", "rest"]))
        redis_server = AofRedis(tmp_path / "redis")  # a private redis-server: no DB index is shared
        redis_server.start()
        stack.callback(redis_server.stop)
        s3 = stack.enter_context(seaweed_s3(tmp_path / "seaweed"))
        bucket = f"gq-hosts-{uuid.uuid4().hex[:10]}"
        build_s3_client(endpoint_url=s3.endpoint_url, aws_access_key_id=s3.access_key,
                        aws_secret_access_key=s3.secret_key).create_bucket(Bucket=bucket)
        relays = {
            "redis": Relay(host.ip("redis"), redis_server.port),
            "pg": Relay(host.ip("pg"), make_url(pg_url).port or 5432),
            "s3": Relay(host.ip("rest"), urlsplit(s3.endpoint_url).port or 80),
        }
        for relay in relays.values():
            stack.callback(relay.close)
        sim = _start_simulator(tmp_path, host.ip("rest"))
        stack.callback(sim.stop)
        yield Deployment(host, redis_server, pg_url, s3.endpoint_url, s3.access_key, s3.secret_key, bucket,
                         f"http://{host.ip('rest')}:{_port(sim)}", relays, tmp_path)


def _port(sim: Child) -> int:
    return int(sim.argv[sim.argv.index("--port") + 1])


def _start_simulator(workdir: Path, listen_ip: str) -> Child:
    """The simulator as a process of its own, on the host end of the "rest" link: the worker here and
    the other host reach it at one address, so a prediction's `urls.get` works from either."""
    port = free_port()
    args = ["simulator", "--host", listen_ip, "--port", str(port)]
    for key, value in {**SIM_KNOBS, "admin_token": SIM_ADMIN_TOKEN}.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    child = Child("simulator", genqueue_argv(*args), dict(os.environ), workdir / "logs" / "simulator.log")
    child.start()
    if not wait_http(f"http://{listen_ip}:{port}/_sim/stats", 30):
        child.stop()
        raise RuntimeError(f"simulator did not start; see {child.log}")
    return child


# --- a run --------------------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    inject: Callable[[], None]
    clear: Callable[[], None]


@dataclass
class Outcome:
    jobs: list[Job]
    inputs: dict[str, dict[str, Any]]
    records: dict[str, dict[str, Any]]
    seen_terminal: dict[str, float]  # wall time this test first saw each job terminal
    faults: list[dict[str, Any]]
    progress: ProgressLog
    drain_seconds: float | None
    log_dir: Path
    violations: list[str] = field(default_factory=list)


def _request(tag: str, i: int) -> JobRequest:
    return JobRequest(version=VERSION, input={"prompt": f"hosts {tag} job {i}: a lighthouse in fog",
                                              "aspect_ratio": "16:9", "output_format": "png", "steps": 4,
                                              "api_key": FAKE_API_KEY})


def _wait_ready(child: Child, timeout: float = 90.0) -> None:
    """Until the Celery worker says it consumes (so the other host takes its share from the start)."""
    assert child.log is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.log.exists() and " ready." in child.log.read_text(errors="replace"):
            return
        if not child.alive:
            raise RuntimeError(f"{child.name} exited; see {child.log}")
        time.sleep(0.2)
    raise RuntimeError(f"{child.name} not ready after {timeout:.0f}s; see {child.log}")


def run_hosts(dep: Deployment, *, fault: Fault | None = None, other_env: dict[str, str] | None = None,
              waves: tuple[int, int, int] = (40, 20, 20), drain_timeout: float = DRAIN_TIMEOUT) -> Outcome:
    """Worker + beat here, one worker on the other host. Three waves of jobs: before `fault`, 10 s into
    it (held PARTITION_SECONDS), and right after it clears (without a fault: 10 s apart). Then wait
    until every job is terminal and (after a fault) the other host has run a step again."""
    env_main = dep.env(other_host=False)
    root = Root(settings_from(env_main))  # the producer, on this machine
    root.migrate()
    log_dir = dep.workdir / "logs"
    tag = uuid.uuid4().hex[:8]
    inputs: dict[str, dict[str, Any]] = {}
    plog = ProgressLog()
    faults: list[dict[str, Any]] = []
    seen_terminal: dict[str, float] = {}
    drain: float | None = None

    def submit(n: int) -> None:
        if not n:
            return
        reqs = [_request(tag, len(inputs) + i) for i in range(n)]
        for job, req in zip(root.intake.submit(reqs, batch=True)[0], reqs, strict=True):
            inputs[job.id] = dict(req.input)

    def sample() -> int:
        with root.sessions() as s:
            counts = plog.sample(s)
        now = time.time()
        for job_id, status in plog.status.items():
            if status in TERMINAL:
                seen_terminal.setdefault(job_id, now)
        return sum(counts.get(t, 0) for t in TERMINAL)

    def wait_until(t: float) -> None:
        while time.monotonic() < t:
            sample()
            time.sleep(0.25)

    try:
        with Stack(env_main, log_dir) as stack:
            main = stack.add("worker-main", "worker", "--concurrency", "4")
            other = Child("worker-other", dep.host.argv(genqueue_argv("worker", "--concurrency", "4")),
                          {**dep.env(other_host=True), **(other_env or {})}, log_dir / "worker-other.log")
            stack.children[other.name] = other
            other.start()
            stack.add("beat", "beat")
            _wait_ready(main)
            _wait_ready(other)
            t0 = time.monotonic()
            submit(waves[0])
            wait_until(t0 + 5.0)  # jobs in flight on both hosts
            if fault is not None:
                faults.append({"kind": fault.kind, "start_wall": time.time(), "clear_wall": None,
                               "active": len(plog.active())})
                plog.active_at[0] = plog.active()
                fault.inject()
                t_fault = time.monotonic()
                print(f"\nt={t_fault - t0:.1f}s {fault.kind} injected; {len(plog.active())} jobs active", flush=True)
                try:
                    wait_until(t_fault + 10.0)
                    submit(waves[1])  # new work while the other host is cut off
                    wait_until(t_fault + PARTITION_SECONDS)
                finally:
                    fault.clear()
                faults[0]["clear_wall"] = time.time()
                print(f"t={time.monotonic() - t0:.1f}s {fault.kind} cleared; {sample()}/{len(inputs)} terminal",
                      flush=True)
                submit(waves[2])  # work the other host may take again
            else:
                wait_until(t0 + 10.0)
                submit(waves[1])
                wait_until(t0 + 20.0)
                submit(waves[2])
            deadline = time.monotonic() + drain_timeout
            while time.monotonic() < deadline:
                if sample() == len(inputs):
                    drain = time.monotonic() - t0
                    break
                time.sleep(0.25)
            if fault is not None:  # bounded: how long the other host takes to work again is a figure
                while time.monotonic() < deadline and _resumed(log_dir, faults[0]["clear_wall"]) is None:
                    time.sleep(0.5)
            ids = list(inputs)
            with root.sessions() as s:
                rows = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_(ids))
                                                   .options(selectinload(Job.outputs)))}
            answer = httpx.get(f"{dep.sim_url}/_sim/predictions", timeout=60,
                               headers={"Authorization": f"Bearer {SIM_ADMIN_TOKEN}"})
            answer.raise_for_status()
            records = {p["id"]: p for p in answer.json()["predictions"]}
    finally:
        root.celery.close()
        root.close()
    out = Outcome([rows[i] for i in ids], inputs, records, seen_terminal, faults, plog, drain, log_dir)
    out.violations = verify(out, dep.s3_client())
    return out


def verify(out: Outcome, s3: S3Client) -> list[str]:
    """Every job against the simulator's record and the stored bytes; one line per miss."""
    v: list[str] = []
    owned: set[str] = set()
    for job in out.jobs:
        tag = f"job {job.id}"
        owned.add(job.prediction_id or "")
        if job.status not in TERMINAL:
            v.append(f"{tag}: not terminal ({job.status}, next_check_at={job.next_check_at})")
            continue
        rec = out.records.get(job.prediction_id or "")
        if rec is None:
            v.append(f"{tag}: {job.status} without a known prediction ({job.error_code}: {job.error_message})")
            continue
        if rec["input_fingerprint"] != fingerprint(out.inputs[job.id]):
            v.append(f"{tag}: prediction {rec['id']} was made for another input")
        if rec["duplicates"] != 1:
            v.append(f"{tag}: {rec['duplicates']} creates for this input (duplicate predictions)")
        metrics = rec.get("metrics") or {}
        if (job.prediction_status, job.predict_time, job.total_time) != (
                rec["status"], metrics.get("predict_time"), metrics.get("total_time")):
            v.append(f"{tag}: ({job.prediction_status}, {job.predict_time}, {job.total_time}) != simulator "
                     f"({rec['status']}, {metrics.get('predict_time')}, {metrics.get('total_time')})")
        if rec["status"] == "succeeded":
            if job.status != "succeeded":
                v.append(f"{tag}: {job.status} ({job.error_code}: {job.error_message}) but the prediction succeeded")
                continue
            want = [f["sha256"] for f in rec["files"]]
            if [o.sha256 for o in job.outputs] != want:
                v.append(f"{tag}: outputs {[o.sha256 for o in job.outputs]} != simulator {want}")
            for o in job.outputs:
                bucket, _, key = o.storage_uri.removeprefix("s3://").partition("/")
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                if hashlib.sha256(body).hexdigest() != o.sha256:
                    v.append(f"{tag}: stored object {o.storage_uri} does not hash to {o.sha256}")
        elif rec["status"] == "failed":
            if (job.status, job.error_code, job.error_message) != ("failed", "prediction_failed", rec["error"]):
                v.append(f"{tag}: {job.status}/{job.error_code} {job.error_message!r} but the prediction failed "
                         f"with {rec['error']!r}")
        else:
            v.append(f"{tag}: the prediction ended {rec['status']} (nothing here cancels or aborts)")
    v += [f"prediction {pid} belongs to no job" for pid in out.records if pid not in owned]
    return v


# --- reporting ----------------------------------------------------------------------------------------

JOB_RE = re.compile(r"job=([0-9a-f]{32})")
SWEEP_RE = re.compile(r"sweep re-sent (\d+) overdue steps .*?\((\d+) lost\)")
RELEASE_RE = re.compile(r"sweep looks up (\d+) creates whose worker died")
FINISH_RE = re.compile(r"job=([0-9a-f]{32}) (?:succeeded outputs=|prediction=\S+ \w+ -> failed)")


STEP_LINE_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ \S+ job=([0-9a-f]{32})", re.MULTILINE)


def _steps(log: Path) -> list[tuple[float, str]]:
    """(wall time, job id) of every job line a worker logged (its log's times are its local clock)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return [(datetime.strptime(ts, "%Y-%m-%d %H:%M:%S,%f").timestamp(), job_id)
            for ts, job_id in STEP_LINE_RE.findall(text)]


def _resumed(log_dir: Path, since: float) -> float | None:
    """Seconds from `since` to the other host's first job line after it (None: none yet)."""
    after = [t for t, _ in _steps(log_dir / "worker-other.log") if t > since]
    return min(after) - since if after else None


def _takeover(out: Outcome) -> list[float]:
    """For each job active when the fault started: seconds to its next status change, whoever made it
    (the worker here carrying on, the other host's steps that still land, or either after the clear)."""
    f = out.faults[0]
    delays = []
    for job_id in out.progress.active_at.get(0, []):
        after = [t for t, _ in out.progress.events.get(job_id, []) if t > f["start_wall"]]
        if after:
            delays.append(min(after) - f["start_wall"])
    return delays


def _log(out: Outcome, name: str) -> str:
    path = out.log_dir / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def _pcts(values: list[float]) -> str:
    if not values:
        return "n=0"
    q = statistics.quantiles(values, n=20, method="inclusive") if len(values) > 1 else [values[0]] * 19
    return f"n={len(values)} p50={statistics.median(values):.1f}s p95={q[18]:.1f}s max={max(values):.1f}s"


def summary(out: Outcome) -> str:
    statuses = Counter(j.status for j in out.jobs)
    codes = Counter(j.error_code for j in out.jobs if j.error_code)
    dupes = len(out.records) - len({r["input_fingerprint"] for r in out.records.values()})
    lines = [
        f"  jobs {len(out.jobs)}: statuses {dict(sorted(statuses.items()))} error codes {dict(codes)}",
        f"  drain {out.drain_seconds:.1f}s" if out.drain_seconds is not None else "  NOT DRAINED",
        f"  simulator predictions {len(out.records)} for {len(out.jobs)} jobs; duplicate creates {dupes}",
        f"  create attempts per job {dict(sorted(Counter(j.attempts for j in out.jobs).items()))}",
    ]
    for name in ("worker-main", "worker-other"):
        text = _log(out, name)
        sweeps = [(int(a), int(b)) for a, b in SWEEP_RE.findall(text)]
        lines.append(f"  {name}: touched {len(set(JOB_RE.findall(text)))} jobs, finished "
                     f"{len(set(FINISH_RE.findall(text)))}; sweeps that re-sent: {len(sweeps)} "
                     f"({sum(a for a, _ in sweeps)} steps, {sum(b for _, b in sweeps)} counted lost); "
                     f"'database unavailable' {text.count('database unavailable')}, "
                     f"tracebacks {text.count('Traceback')}, lost create answers adopted "
                     f"{text.count('whose create answer was lost')}, dead claimants' creates looked up "
                     f"{sum(int(n) for n in RELEASE_RE.findall(text))}")
    if out.faults:
        f = out.faults[0]
        lines.append(f"  jobs active at the fault start -> their next status change: {_pcts(_takeover(out))}")
        resumed = _resumed(out.log_dir, f["clear_wall"])
        lines.append("  the other host's first step after the clear: " +
                     (f"+{resumed:.1f}s" if resumed is not None else "none before the end of the run"))
    for kind, r in recovery_times(out.faults, out.progress).items():
        if r.get("n"):
            lines.append(f"  recovery after {kind} (clear -> next progress of the {r['n']} jobs it caught): "
                         f"p50={r['p50']:.1f}s p95={r['p95']:.1f}s max={r['max']:.1f}s; "
                         f"{r['finished_during']} finished during the fault")
        else:
            lines.append(f"  recovery after {kind}: no job was still held at the clear "
                         f"({r['finished_during']} finished during the fault)")
    lines.append(f"  logs {out.log_dir}")
    lines += [f"  VIOLATION {x}" for x in out.violations[:30]]
    return "\n".join(lines)


def _check(out: Outcome) -> None:
    print(summary(out), flush=True)
    assert out.drain_seconds is not None, summary(out)
    assert out.violations == [], summary(out)
    assert len(out.records) == len(out.jobs)  # one prediction per job, none orphaned
    assert {j.error_code for j in out.jobs} <= {None, "prediction_failed"}


# --- the tests ----------------------------------------------------------------------------------------


def test_worker_host_partitioned_from_redis(deployment: Deployment) -> None:
    host = deployment.host
    out = run_hosts(deployment, fault=Fault("redis-partition", lambda: host.cut("redis"),
                                            lambda: host.heal("redis")))
    print(f"\nother host cut off from Redis for {PARTITION_SECONDS:.0f}s (veth down, packets dropped):")
    _check(out)


def test_worker_host_partitioned_from_postgres(deployment: Deployment) -> None:
    host = deployment.host
    out = run_hosts(deployment, fault=Fault("pg-partition", lambda: host.cut("pg"), lambda: host.heal("pg")))
    print(f"\nother host cut off from PostgreSQL for {PARTITION_SECONDS:.0f}s (veth down, packets dropped):")
    _check(out)


# libfaketime 0.9.10 (Debian 12) with FAKETIME_DONT_FAKE_MONOTONIC=1 passes a negative time to the
# kernel for clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME), which is how Python >= 3.11 sleeps: every
# time.sleep() raises EINVAL (libfaketime issue #426, fixed after 0.9.10). The skewed host's processes
# then sleep with a relative select() timeout instead, which libfaketime leaves alone.
_SLEEP_FIX = """
import select
import time


def _sleep(seconds):
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        select.select([], [], [], left)


time.sleep = _sleep
"""


def _faketime_env(workdir: Path) -> dict[str, str]:
    """The environment that puts a process's wall clock SKEW ahead, checked on a probe process."""
    if not LIBFAKETIME.exists():
        pytest.skip("libfaketime is not installed: apt-get install -y faketime libfaketime")
    # Only the wall clock moves: a host whose clock is off still counts seconds at the right pace, and
    # with the monotonic clock faked too, Python's timed lock waits (sem_clockwait) never return.
    env = {**os.environ, "LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": SKEW, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    probe = [sys.executable, "-c", "import time; time.sleep(0.01); print(time.time())"]
    if subprocess.run(probe, env=env, capture_output=True, timeout=30).returncode != 0:
        fix = workdir / "sleepfix"
        fix.mkdir(exist_ok=True)
        (fix / "sitecustomize.py").write_text(_SLEEP_FIX)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(fix), os.environ.get("PYTHONPATH")) if p)
    before = time.time()
    shown = float(subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30, check=True).stdout)
    print(f"\nthe other host's clock: {shown - before:+.1f}s against this machine's"
          f"{' (time.sleep worked around: libfaketime #426)' if 'PYTHONPATH' in env else ''}")
    return {k: v for k, v in env.items() if os.environ.get(k) != v}


def _wall(dt: datetime | None) -> float | None:
    return dt.replace(tzinfo=dt.tzinfo or UTC).timestamp() if dt is not None else None


def _skew_report(out: Outcome) -> tuple[int, int]:
    """Print what a host 90 s ahead gets wrong; returns (steps its sweeps re-sent, of them counted lost)."""
    def secs(a: datetime | None, b: datetime | None) -> float | None:
        return (b - a).total_seconds() if a is not None and b is not None else None

    # Moments it stamps are 90 s ahead: a claim it made looks 90 s older than the prediction it created
    # (the simulator's clock is right), a job it finished ends 90 s after this test saw it end.
    claims = [d for j in out.jobs if (d := secs(j.prediction_created_at, j.submit_started_at)) is not None]
    finishes = [(_wall(j.finished_at) or 0) - out.seen_terminal[j.id] for j in out.jobs if j.id in out.seen_terminal]
    print(f"  claims stamped ahead (submit_started_at > prediction created_at + 30 s): "
          f"{sum(d > 30 for d in claims)}/{len(claims)}; finished_at stamped ahead (> 30 s after this test saw "
          f"the job end): {sum(d > 30 for d in finishes)}/{len(finishes)}")
    # What the jobs recorded (end_to_end_time, queue_time, detection_lag: wrong by 90 s wherever the host
    # stamped one end) against what this machine's clock saw (created_at by the intake here -> seen ended).
    for col in ("end_to_end_time", "queue_time", "detection_lag"):
        values = [float(v) for j in out.jobs if (v := getattr(j, col)) is not None]
        print(f"  recorded {col:<16} {_pcts(values)}")
    seen = [out.seen_terminal[j.id] - (_wall(j.created_at) or 0) for j in out.jobs if j.id in out.seen_terminal]
    print(f"  observed end to end (this clock)  {_pcts(seen)}; {sum(d > 60 for d in seen)} jobs over 60 s "
          f"(each waited for a check time the skewed host wrote ~90 s ahead)")
    sweeps = [(int(a), int(b)) for a, b in SWEEP_RE.findall(_log(out, "worker-other"))]
    resent, lost = sum(a for a, _ in sweeps), sum(b for _, b in sweeps)
    ran = len(re.findall(r"Task genqueue\.sweep\[\S+\] succeeded", _log(out, "worker-other")))
    print(f"  sweeps run on the skewed host: {ran}, re-sent {resent} steps, counted {lost} as lost")
    return resent, lost


def test_worker_host_clock_skewed(deployment: Deployment) -> None:
    out = run_hosts(deployment, other_env=_faketime_env(deployment.workdir), waves=SKEW_WAVES,
                    drain_timeout=SKEW_DRAIN_TIMEOUT)
    print(f"\nother host's clock {SKEW} (libfaketime), no partition:")
    _, lost = _skew_report(out)
    # What holds: one prediction per job, every job terminal with the right outcome and outputs.
    _check(out)
    # The sweep decides by the database's clock wherever it runs: before, the skewed host's sweeps
    # counted live steps as lost (103 in one run: poison after 8) and pushed their check times ahead.
    assert lost == 0
