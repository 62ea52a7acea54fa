"""Durability ("chaos") run: real worker/beat/simulator processes, mixed API faults, SIGKILLed
workers and an emptied Redis; then every job is checked against the simulator's own record.

Runnable (prints a report, exits 1 on any violation)::

    .venv/bin/python -m tests.chaos.chaos --jobs 1000 --workers 3 --kills 2 --flushes 2

Importable: ``run(ChaosConfig(...)) -> Report`` (tests/chaos/test_chaos.py).

What is checked for EVERY job (each failure is one line in ``Report.violations``):
  * it is terminal; nothing is left queued/submitting/running/storing;
  * it has a prediction on the simulator, whose input fingerprint is the job's own input;
  * ``succeeded`` <=> the simulator's prediction succeeded; ``failed`` (prediction_failed) <=> the
    simulator's prediction failed, with the same error text; no other outcome is acceptable;
  * predict_time / total_time / prediction_status equal the simulator's;
  * outputs: same count and sha256 as the simulator's files, and the stored bytes hash to it;
  * the simulator saw exactly one create for the job's input (``duplicates == 1``) and holds no
    prediction that no job owns (an orphan = a create whose answer was lost and never adopted).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import selectinload

from genqueue.bootstrap import Root
from genqueue.cli.stack import Child, Stack, free_port, genqueue_argv, wait_http
from genqueue.intake import JobRequest
from genqueue.intake.requests import RetryPolicy
from genqueue.models.keys import Limits, Role, create_key
from genqueue.models.status import TERMINAL_NAMES as TERMINAL
from genqueue.models.tables import Job
from genqueue.simulator.store import fingerprint
from tests.support.aof_redis import AofRedis
from tests.support.pipeline import settings_from
from tests.support.private_pg import PrivatePostgres
from tests.support.tcpproxy import TcpProxy

VERSION = "jigsawstack/image-generation:43d5bce2e1c97fa1e7d8996187a85cd5c882787989091af3b135c7a16ca23b79"
FAKE_API_KEY = "sk_test_fake_not_a_real_key"
PG_ADMIN_URL = os.environ.get("GENQUEUE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("GENQUEUE_TEST_REDIS", "redis://127.0.0.1:6379")


@dataclass
class ChaosConfig:
    jobs: int = 120
    workers: int = 2
    concurrency: int = 4
    db: str = "postgresql"  # or "sqlite"
    redis_db: int = 3  # a DB index of this run's own: flushed before, during (injection) and after
    waves: int = 4  # jobs are submitted in this many batches...
    wave_interval: float = 2.0  # ...this many seconds apart, so injections hit every stage
    # simulator
    predict_seconds: float = 0.5
    start_delay: float = 0.2
    jitter: float = 0.3
    fail_rate: float = 0.05
    fault_429: float = 0.10
    fault_5xx: float = 0.05
    fault_drop: float = 0.02
    fault_first_download: float = 0.05
    fault_lost_create: float = 0.0
    seed: int | None = None
    # every job's retry policy: this many attempts on model_error (1: the default, never re-run)
    retry_attempts: int = 1
    # injections, spread evenly over the run's progress (fraction of terminal jobs)
    kills: int = 1  # SIGKILL a worker's whole process group, then restart it (a supervisor's job)
    flushes: int = 1  # FLUSHDB the Redis DB index (Redis restarted with nothing persisted)
    restart_delay: float = 1.0
    pg_outage: float = 0.0  # seconds PostgreSQL refuses connections (workers reach it through a proxy)
    # a PostgreSQL server of the run's own (tests/support/private_pg.py), really restarted: stopped
    # (every connection cut), started again pg_down seconds later with its data
    pg_restarts: int = 0
    pg_down: float = 5.0
    # a redis-server of this run's own (append-only file on, appendfsync everysec, in the workdir)
    # instead of DB index `redis_db` of the shared one; required by redis_restarts
    private_redis: bool = False
    redis_restarts: int = 0  # SIGTERM the private Redis (AOF flushed, every connection dropped), restart it
    redis_down: float = 3.0  # ...this many seconds later, on the same port
    beat_kills: int = 0  # SIGKILL the beat, then restart it beat_down seconds later
    beat_down: float = 5.0
    # while the beat is down also lose messages (FLUSHDB, and SIGKILL a worker, restarted restart_delay
    # later): only the restarted beat's sweeps can recover those jobs
    beat_kill_losses: bool = True
    beats: int = 1  # 2 = a second beat started by mistake (own schedule file), running the whole time
    # restart a worker or beat that exits on its own, restart_delay s later, as the deployment's
    # supervisor does (docker-compose `restart: unless-stopped`); each one is reported
    supervise: bool = True
    api_restarts: int = 0  # jobs are then submitted over HTTP; the API is SIGKILLed and restarted
    timeout: float = 600.0  # for all jobs to become terminal
    workdir: Path | None = None  # logs, outputs, SQLite file; default: a fresh temp dir
    keep_db: bool = False
    env_extra: dict[str, str] = field(default_factory=dict)

    def sim_knobs(self) -> dict[str, Any]:
        knobs: dict[str, Any] = dict(
            start_delay=self.start_delay, predict_seconds=self.predict_seconds, jitter=self.jitter,
            fail_rate=self.fail_rate, fault_429=self.fault_429, fault_5xx=self.fault_5xx,
            fault_drop=self.fault_drop, fault_first_download=self.fault_first_download,
            fault_lost_create=self.fault_lost_create, output_mode="url", retention_seconds=3600.0,
        )
        if self.seed is not None:
            knobs["seed"] = self.seed
        return knobs


@dataclass
class Report:
    config: dict[str, Any]
    jobs: int = 0
    drain_seconds: float | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    error_codes: dict[str, int] = field(default_factory=dict)
    injections: list[str] = field(default_factory=list)
    sim_predictions: int = 0
    sim_stats: dict[str, Any] = field(default_factory=dict)
    sweeper_requeued: dict[str, int] = field(default_factory=dict)
    adopted_lost_creates: int = 0
    recreated_after_lookup: int = 0
    attempts: dict[str, int] = field(default_factory=dict)
    # retry policies: jobs by their number of attempts (prediction made and finished, one after another)
    tries: dict[str, int] = field(default_factory=dict)
    total_tries: int = 0
    duplicates: int = 0
    violations: list[str] = field(default_factory=list)
    workdir: str = ""
    stuck: dict[str, str] = field(default_factory=dict)
    # every injection as {kind, start, clear} (seconds since the first wave; clear = the fault is over)
    faults: list[dict[str, Any]] = field(default_factory=list)
    # per fault kind: jobs active at the fault (and still at its clear), time from the clear to their
    # next progress (status change, or finished_at) -- see recovery_times()
    recovery: dict[str, dict[str, Any]] = field(default_factory=dict)
    sweeps_sent: dict[str, int] = field(default_factory=dict)  # per beat, from its log
    exited: list[str] = field(default_factory=list)  # processes that exited on their own (supervisor restarted)

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def _private_redis(self) -> bool:
        return bool(self.config.get("private_redis") or self.config.get("redis_restarts"))

    def summary(self) -> str:
        s = self.sim_stats
        lines = [
            f"chaos: {self.jobs} jobs, workers={self.config['workers']}x{self.config['concurrency']} "
            f"db={self.config['db']} redis_db={self.config['redis_db']}"
            f"{' (private redis-server, AOF on)' if self._private_redis else ''}",
            f"  drain time        {self.drain_seconds:.1f}s" if self.drain_seconds is not None
            else "  drain time        NOT DRAINED (timeout)",
            f"  statuses          {dict(sorted(self.statuses.items()))}",
            f"  error codes       {dict(sorted(self.error_codes.items()))}",
            f"  injected          {', '.join(self.injections) or 'nothing'}",
            f"  exited on their own (restarted by the supervisor) {', '.join(self.exited) or 'none'}",
            f"  simulator         predictions={self.sim_predictions} creates={s.get('creates')} "
            f"creates_lost={s.get('creates_lost')} 429s={s.get('throttled_429')} "
            f"(fault={s.get('throttled_fault')}, rate={s.get('throttled_rate_limit')}) "
            f"dropped={s.get('dropped_connections')} faults={s.get('faults_injected')}",
            f"  sweeper re-enqueued {self.sweeper_requeued or 0}",
            f"  lost creates adopted={self.adopted_lost_creates} re-created after empty lookup="
            f"{self.recreated_after_lookup}",
            f"  create attempts per job {dict(sorted(self.attempts.items()))}",
            f"  duplicate predictions {self.duplicates}",
            f"  attempts per job  {self.tries} (predictions made by attempts: {self.total_tries})",
        ]
        if self.sweeps_sent:
            lines.append(f"  sweeps sent       {self.sweeps_sent}")
        for kind, r in self.recovery.items():
            if r.get("n"):
                lines.append(
                    f"  recovery {kind:<14} n={r['n']} p50={r['p50']:.1f}s p95={r['p95']:.1f}s max={r['max']:.1f}s "
                    f"(jobs active at the fault; {r['finished_during']} finished during it)")
            else:
                lines.append(f"  recovery {kind:<14} n=0 ({r['finished_during']} finished during it)")
        lines += [
            f"  logs              {self.workdir}/logs",
            f"  VIOLATIONS        {len(self.violations)}",
        ]
        lines += [f"    - {v}" for v in self.violations[:50]]
        if len(self.violations) > 50:
            lines.append(f"    ... and {len(self.violations) - 50} more")
        return "\n".join(lines)


# --- set-up helpers -------------------------------------------------------------------------------


@contextlib.contextmanager
def _database(cfg: ChaosConfig, workdir: Path, admin_url: str = PG_ADMIN_URL) -> Any:
    if cfg.db == "sqlite":
        yield f"sqlite:///{workdir}/genqueue.db"
        return
    name = f"gq_chaos_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)  # outlives restarts
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        if not cfg.keep_db:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _start_simulator(cfg: ChaosConfig, workdir: Path, env: dict[str, str]) -> tuple[Child, str]:
    """The simulator as a process of its own (it outlives every worker kill)."""
    port = free_port()
    args = ["simulator", "--port", str(port)]
    for key, value in cfg.sim_knobs().items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    child = Child("simulator", genqueue_argv(*args), dict(env), workdir / "logs" / "simulator.log")
    child.start()
    url = f"http://127.0.0.1:{port}"
    if not wait_http(f"{url}/_sim/stats", 30):
        child.stop()
        raise RuntimeError(f"simulator did not start; see {child.log}")
    return child, url


def _env(cfg: ChaosConfig, workdir: Path, db_url: str, redis_url: str, sim_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GENQUEUE_DATA_DIR=str(workdir / "data"), DATABASE_URL=db_url, REDIS_URL=redis_url,
        STORAGE_URL=f"file://{workdir}/outputs", REPLICATE_BASE_URL=f"{sim_url}/v1",
        REPLICATE_API_TOKEN="r8_sim_fake_token",
        OUTPUT_ALLOWED_HOSTS=urlsplit(sim_url).netloc, OUTPUT_ALLOW_PRIVATE="true",
        GENQUEUE_LOG_LEVEL="INFO",
    )
    env.update(cfg.env_extra)
    return env


def _request(run_tag: str, i: int, retry_attempts: int = 1) -> JobRequest:
    inp = {"prompt": f"chaos {run_tag} job {i}: ocean waves at dawn", "aspect_ratio": "16:9",
           "output_format": "png", "steps": 4, "api_key": FAKE_API_KEY}
    retry = RetryPolicy(max_attempts=retry_attempts, on=["model_error"]) if retry_attempts > 1 else None
    # Every priority is mixed in (the dispatcher's order must not cost correctness).
    return JobRequest(version=VERSION, input=inp, priority=i % 10, retry=retry)


class HttpSubmitter:
    """Submits over the HTTP API as a careful client would: one Idempotency-Key per batch, retried
    until accepted, so an API that dies mid-request neither loses nor duplicates a batch."""

    def __init__(self, base: str, key: str, deadline: float) -> None:
        self.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        self.deadline = deadline

    def submit(self, requests: list[JobRequest], idem: str, tick: Any) -> list[str]:
        body = {"jobs": [r.model_dump(mode="json", exclude_none=True) for r in requests]}
        while True:
            try:
                r = self.client.post("/v1/jobs/batch", json=body, headers={"Idempotency-Key": idem})
                if r.status_code == 202:
                    return [j["id"] for j in r.json()["jobs"]]
                if r.status_code < 500:
                    raise RuntimeError(f"batch refused: {r.status_code} {r.text[:300]}")
            except httpx.TransportError:
                pass  # the API is restarting
            if time.monotonic() > self.deadline:
                raise RuntimeError("the API did not accept a batch before the timeout")
            tick()  # keep injections (e.g. restarting the API) going while we wait
            time.sleep(0.5)


# --- the run -----------------------------------------------------------------------------------


def _kill_group(child: Child) -> None:
    """SIGKILL a child's whole process group (main process and prefork children); wait until gone."""
    pid = child.proc.pid if child.proc else None
    child.signal(signal.SIGKILL)
    if child.proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(10)
    if pid is not None:
        for _ in range(100):
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)


class _Injector:
    """Fires the planned injections when the run's progress passes their thresholds."""

    def __init__(self, cfg: ChaosConfig, workers: list[Child], rclient: redis.Redis, report: Report,
                 api: Child | None = None, proxy: TcpProxy | None = None, aof: AofRedis | None = None,
                 beat: Child | None = None, progress: ProgressLog | None = None,
                 pg: PrivatePostgres | None = None) -> None:
        plan: list[str] = []
        kills, flushes = cfg.kills, cfg.flushes
        while kills or flushes:  # interleave: kill, flush, kill, flush, ...
            if kills:
                plan.append("kill")
                kills -= 1
            if flushes:
                plan.append("flush")
                flushes -= 1
        for i in range(cfg.api_restarts if api is not None else 0):
            plan.insert(min(len(plan), 1 + 2 * i), "api")
        if proxy is not None and cfg.pg_outage > 0:
            plan.insert(len(plan) // 2, "pg")
        for i in range(cfg.redis_restarts if aof is not None else 0):
            plan.insert(min(len(plan), 2 * i), "redis")
        for i in range(cfg.beat_kills if beat is not None else 0):
            plan.insert(min(len(plan), 2 * i), "beat")
        for i in range(cfg.pg_restarts if pg is not None else 0):
            plan.insert(min(len(plan), 2 * i), "pgrestart")
        self.api, self.proxy, self.pg_outage, self.pg = api, proxy, cfg.pg_outage, pg
        self.aof, self.beat, self.cfg = aof, beat, cfg
        self.progress = progress or ProgressLog()
        self.t0 = time.monotonic()  # the run's t=0 (kept in step by tick)
        n = len(plan)
        # thresholds between 10% and 60% of jobs terminal
        self.plan = [(0.10 + 0.50 * i / max(1, n - 1) if n > 1 else 0.3, what) for i, what in enumerate(plan)]
        self.workers = workers
        self.redis = rclient
        self.report = report
        self.restart_delay = cfg.restart_delay
        self.kill_count = 0
        # (due on the monotonic clock, action(elapsed)): restarts and other ends of a fault
        self.pending: list[tuple[float, Any]] = []
        self.supervised: list[Child] = []  # set by run(): workers and beats
        self.restarting: set[str] = set()  # names with a restart pending

    def _fault(self, kind: str, elapsed: float) -> dict[str, Any]:
        active = self.progress.active()
        f: dict[str, Any] = {"kind": kind, "start": round(elapsed, 2), "start_wall": time.time(),
                             "clear": None, "clear_wall": None, "active": len(active)}
        self.progress.active_at[len(self.report.faults)] = active
        self.report.faults.append(f)
        return f

    def _clear(self, f: dict[str, Any]) -> float:
        elapsed = time.monotonic() - self.t0
        f["clear"], f["clear_wall"] = round(elapsed, 2), time.time()
        return elapsed

    def _restart_later(self, child: Child, delay: float, f: dict[str, Any]) -> None:
        def restart(elapsed: float) -> None:
            child.start()
            self.restarting.discard(child.name)
            elapsed = self._clear(f)
            self.report.injections.append(f"t={elapsed:.1f}s restart {child.name}")

        self.restarting.add(child.name)
        self.pending.append((time.monotonic() + delay, restart))

    def _supervise(self, elapsed: float) -> None:
        for child in self.supervised:
            if child.name in self.restarting or child.proc is None or child.proc.poll() is None:
                continue
            rc = child.proc.returncode
            self.report.exited.append(f"t={elapsed:.1f}s {child.name} (rc={rc})")
            self.restarting.add(child.name)

            def restart(el: float, child: Child = child) -> None:
                child.start()
                child.restarts += 1
                self.restarting.discard(child.name)

            self.pending.append((time.monotonic() + self.restart_delay, restart))

    def tick(self, done_fraction: float, elapsed: float) -> None:
        now = time.monotonic()
        self.t0 = now - elapsed
        for item in list(self.pending):
            if now >= item[0]:
                self.pending.remove(item)
                item[1](elapsed)
        if self.cfg.supervise:
            self._supervise(elapsed)
        while self.plan and done_fraction >= self.plan[0][0]:
            _, what = self.plan.pop(0)
            at = f"t={elapsed:.1f}s ({done_fraction:.0%} done)"
            if what == "pg" and self.proxy is not None:
                proxy = self.proxy
                proxy.down()
                f = self._fault("pg-outage", elapsed)

                def back(el: float, f: dict[str, Any] = f, proxy: TcpProxy = proxy) -> None:
                    proxy.start()
                    el = self._clear(f)
                    self.report.injections.append(f"t={el:.1f}s PostgreSQL accepts connections again")

                self.pending.append((now + self.pg_outage, back))
                self.report.injections.append(f"{at} PostgreSQL refuses connections for {self.pg_outage:.0f}s")
            elif what == "pgrestart" and self.pg is not None:
                pg = self.pg
                pg.stop("fast")  # every connection cut, as a restart does
                f = self._fault("pg-restart", elapsed)

                def pg_back(el: float, f: dict[str, Any] = f, pg: PrivatePostgres = pg) -> None:
                    pg.start()
                    el = self._clear(f)
                    self.report.injections.append(f"t={el:.1f}s PostgreSQL started again")

                self.pending.append((now + self.cfg.pg_down, pg_back))
                self.report.injections.append(f"{at} PostgreSQL stopped (restart, down {self.cfg.pg_down:.0f}s)")
            elif what == "api" and self.api is not None:
                self.api.signal(signal.SIGKILL)
                if self.api.proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.api.proc.wait(10)
                self._restart_later(self.api, self.restart_delay, self._fault("api-kill", elapsed))
                self.report.injections.append(f"{at} SIGKILL api")
            elif what == "kill":
                child = self.workers[self.kill_count % len(self.workers)]
                self.kill_count += 1
                _kill_group(child)
                child.restarts += 1
                self._restart_later(child, self.restart_delay, self._fault("worker-kill", elapsed))
                self.report.injections.append(f"{at} SIGKILL {child.name} process group")
            elif what == "flush":
                keys = self.redis.dbsize()
                self.redis.flushdb()
                self._clear(self._fault("flushdb", elapsed))
                self.report.injections.append(f"{at} FLUSHDB ({keys} keys dropped)")
            elif what == "redis" and self.aof is not None:
                aof = self.aof
                keys = self.redis.dbsize()
                aof.stop()  # SIGTERM: the AOF is fsynced, every client connection dropped
                f = self._fault("redis-restart", elapsed)

                def redis_back(el: float, f: dict[str, Any] = f, aof: AofRedis = aof) -> None:
                    aof.start()  # same port, same dir: the AOF is replayed before it answers PING
                    el = self._clear(f)
                    self.redis.connection_pool.disconnect()
                    kept = self.redis.dbsize()
                    self.report.injections.append(
                        f"t={el:.1f}s Redis back on port {aof.port} ({kept} keys loaded from the AOF)")

                self.pending.append((time.monotonic() + self.cfg.redis_down, redis_back))
                self.report.injections.append(
                    f"{at} SIGTERM Redis ({keys} keys in the DB; down {self.cfg.redis_down:.0f}s)")
            elif what == "beat" and self.beat is not None:
                _kill_group(self.beat)
                self.beat.restarts += 1
                f = self._fault("beat-kill", elapsed)
                extra = ""
                if self.cfg.beat_kill_losses:
                    keys = self.redis.dbsize()
                    self.redis.flushdb()
                    child = self.workers[self.kill_count % len(self.workers)]
                    self.kill_count += 1
                    _kill_group(child)
                    child.restarts += 1
                    self._restart_later(child, self.restart_delay, self._fault("worker-kill", elapsed))
                    extra = (f" + FLUSHDB ({keys} keys dropped) + SIGKILL {child.name} (only a sweep can "
                             f"recover what they held)")
                self._restart_later(self.beat, self.cfg.beat_down, f)
                self.report.injections.append(f"{at} SIGKILL beat{extra}, restart in {self.cfg.beat_down:.0f}s")

    def finish(self, elapsed: float) -> None:
        self.t0 = time.monotonic() - elapsed
        for _, action in self.pending:
            action(elapsed)
        self.pending.clear()


def _wall(dt: Any) -> float | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return float(dt.timestamp())


class ProgressLog:
    """Each job's status changes as seen from outside: sampled from the jobs table every loop, each
    change timed by the row's own timestamps (finished_at for a terminal status, else updated_at,
    which every write stamps), so the sampling interval does not blur it."""

    def __init__(self) -> None:
        self.status: dict[str, str] = {}
        self.events: dict[str, list[tuple[float, str]]] = {}
        self.active_at: dict[int, list[str]] = {}  # fault index -> jobs non-terminal when it started

    def sample(self, session: Any) -> dict[str, int]:
        now = time.time()
        rows = session.execute(select(Job.id, Job.status, Job.updated_at, Job.finished_at)).all()
        for job_id, status, updated_at, finished_at in rows:
            if self.status.get(job_id) == status:
                continue
            if job_id in self.status:
                when = _wall(finished_at) if status in TERMINAL and finished_at is not None else _wall(updated_at)
                self.events.setdefault(job_id, []).append((min(when or now, now), status))
            self.status[job_id] = status
        return dict(Counter(self.status.values()))

    def active(self) -> list[str]:
        return [j for j, st in self.status.items() if st not in TERMINAL]


def _percentile(values: list[float], q: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def recovery_times(faults: list[dict[str, Any]], log: ProgressLog) -> dict[str, dict[str, Any]]:
    """Per fault kind: for every job that was active when the fault started and still active when it
    cleared, (its next status change or finished_at after the clear) - (the clear)."""
    out: dict[str, dict[str, Any]] = {}
    for i, f in enumerate(faults):
        if f["clear_wall"] is None:
            continue
        active = log.active_at.get(i, [])
        r = out.setdefault(f["kind"], {"delays": [], "finished_during": 0})
        for job_id in active:
            events = log.events.get(job_id, [])
            if any(t <= f["clear_wall"] and st in TERMINAL for t, st in events):
                r["finished_during"] += 1
                continue
            after = [t for t, _ in events if t > f["clear_wall"]]
            if after:
                r["delays"].append(max(0.0, min(after) - f["clear_wall"]))
    for r in out.values():
        d = r.pop("delays")
        r["n"] = len(d)
        if d:
            r.update(p50=_percentile(d, 0.50), p95=_percentile(d, 0.95), max=max(d),
                     over_5s=sum(1 for x in d if x > 5), over_30s=sum(1 for x in d if x > 30))
    return out


# "sweep re-sent 35 overdue steps {'poll': 16, 'submit': 19} (18 lost)" (older: "re-enqueued ... jobs")
SWEEP_RE = re.compile(r"sweep re-(?:sent|enqueued) (\d+) overdue (?:steps|jobs) (\{.*?\})")


def _scan_logs(log_dir: Path, report: Report) -> None:
    requeued: Counter[str] = Counter()
    for log in sorted(log_dir.glob("worker-*.log")):
        with log.open(errors="replace") as fh:
            for line in fh:
                m = SWEEP_RE.search(line)
                if m:
                    with contextlib.suppress(ValueError, SyntaxError):
                        for k, v in json.loads(m.group(2).replace("'", '"')).items():
                            requeued[k] += int(v)
                elif "whose create answer was lost" in line:
                    report.adopted_lost_creates += 1
                elif "no prediction found for an unanswered create" in line:
                    report.recreated_after_lookup += 1
    report.sweeper_requeued = dict(requeued)
    for log in sorted(log_dir.glob("beat*.log")):
        with log.open(errors="replace") as fh:
            report.sweeps_sent[log.stem] = sum(1 for line in fh if "Sending due task sweep" in line)


def _stored_sha(uri: str) -> str | None:
    path = Path(uri.removeprefix("file://"))
    if not path.exists():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify_tries(job: Job, records: dict[str, dict[str, Any]], retry_attempts: int, v: list[str]) -> list[str]:
    """A job's earlier attempts (retry policy): each made one prediction that failed, the next one was
    created only after it had finished, and the policy's number of attempts was used exactly (all of them
    when the last failed too, fewer only when one succeeded). Returns the earlier attempts' predictions."""
    tag = f"job {job.id}"
    past = list(job.past_attempts)
    tries = len(past) + 1
    if [a.attempt for a in past] != list(range(1, tries)) or job.attempt != tries:
        v.append(f"{tag}: attempts numbered {[a.attempt for a in past]} then {job.attempt}")
    if tries > retry_attempts:
        v.append(f"{tag}: {tries} attempts, more than the policy's {retry_attempts}")
    if job.status == "failed" and job.error_code == "prediction_failed" and tries != retry_attempts:
        v.append(f"{tag}: failed after {tries} attempts, the policy asks for {retry_attempts}")
    pids = [a.prediction_id for a in past]
    for a in past:
        rec = records.get(a.prediction_id or "")
        if rec is None or a.status != "failed" or a.error_code != "prediction_failed" or rec["status"] != "failed":
            v.append(f"{tag}: attempt {a.attempt} ({a.status}/{a.error_code}, prediction {a.prediction_id}) "
                     "is not a failed prediction on the simulator")
        elif a.error_message != rec["error"]:
            v.append(f"{tag}: attempt {a.attempt} error {a.error_message!r} != simulator {rec['error']!r}")
    chain = [records.get(p or "") for p in [*pids, job.prediction_id]]
    for before, after in itertools.pairwise(chain):
        if before and after and _ts(after["created_at"]) < _ts(before["completed_at"]):
            v.append(f"{tag}: prediction {after['id']} created before {before['id']} had finished (two at once)")
    return [p for p in pids if p]


def _ts(value: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def verify(jobs: list[Job], records: dict[str, dict[str, Any]], inputs: dict[str, dict[str, Any]],
           report: Report, retry_attempts: int = 1) -> None:
    """Every job against the simulator's record; appends to report.violations."""
    v = report.violations
    owned: set[str] = set()
    tries: Counter[int] = Counter()
    for job in jobs:
        tag = f"job {job.id}"
        if job.status not in TERMINAL:
            v.append(f"{tag}: not terminal ({job.status})")
            continue
        earlier = verify_tries(job, records, retry_attempts, v)
        owned.update(earlier)
        tries[len(earlier) + 1] += 1
        if job.prediction_id is None:
            v.append(f"{tag}: {job.status} without a prediction ({job.error_code}: {job.error_message})")
            continue
        owned.add(job.prediction_id)
        rec = records.get(job.prediction_id)
        if rec is None:
            v.append(f"{tag}: prediction {job.prediction_id} unknown to the simulator")
            continue
        if rec["input_fingerprint"] != fingerprint(inputs[job.id]):
            v.append(f"{tag}: prediction {rec['id']} was made for another input")
        if rec["duplicates"] != len(earlier) + 1:  # one create per attempt, never more
            v.append(f"{tag}: {rec['duplicates']} creates on the simulator for this input over "
                     f"{len(earlier) + 1} attempts (duplicate predictions)")
        if job.prediction_status != rec["status"]:
            v.append(f"{tag}: prediction_status {job.prediction_status} != simulator {rec['status']}")
        metrics = rec.get("metrics") or {}
        if job.predict_time != metrics.get("predict_time") or job.total_time != metrics.get("total_time"):
            v.append(f"{tag}: times ({job.predict_time}, {job.total_time}) != simulator "
                     f"({metrics.get('predict_time')}, {metrics.get('total_time')})")
        if rec["status"] == "succeeded":
            if job.status != "succeeded":
                v.append(f"{tag}: {job.status} ({job.error_code}: {job.error_message}) but the prediction succeeded")
                continue
            want = [f["sha256"] for f in rec["files"]]
            got = [o.sha256 for o in job.outputs]
            if got != want:
                v.append(f"{tag}: output sha256 {got} != simulator {want}")
            for out in job.outputs:
                stored = _stored_sha(out.storage_uri)
                if stored != out.sha256:
                    v.append(f"{tag}: stored file {out.storage_uri} hashes to {stored}, not {out.sha256}")
        elif rec["status"] == "failed":
            if job.status != "failed" or job.error_code != "prediction_failed":
                v.append(f"{tag}: {job.status}/{job.error_code} but the prediction failed")
            elif job.error_message != rec["error"]:
                v.append(f"{tag}: error {job.error_message!r} != simulator {rec['error']!r}")
            if job.outputs:
                v.append(f"{tag}: a failed prediction has stored outputs")
        else:
            v.append(f"{tag}: simulator prediction ended {rec['status']} (nothing should cancel or abort here)")
    orphans = [pid for pid in records if pid not in owned]
    for pid in orphans[:20]:
        v.append(f"prediction {pid} on the simulator belongs to no job (duplicates={records[pid]['duplicates']})")
    if len(orphans) > 20:
        v.append(f"... {len(orphans) - 20} more orphan predictions")
    # extra creates: predictions beyond one per attempt (with one attempt each: one per distinct input)
    report.tries = {str(k): n for k, n in sorted(tries.items())}
    report.total_tries = sum(k * n for k, n in tries.items())
    report.duplicates = len(records) - report.total_tries


def run(cfg: ChaosConfig, *, progress: bool = False) -> Report:
    report = Report(config={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()})
    workdir = cfg.workdir or Path(tempfile.mkdtemp(prefix="genqueue-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report.workdir = str(workdir)
    aof: AofRedis | None = None
    if cfg.private_redis or cfg.redis_restarts > 0:
        aof = AofRedis(workdir / "redis")
        aof.start()
        redis_url = f"{aof.url}/{cfg.redis_db}"
    else:
        redis_url = f"{REDIS_BASE}/{cfg.redis_db}"
    rclient = redis.Redis.from_url(redis_url)
    rclient.flushdb()
    plog = ProgressLog()
    run_tag = uuid.uuid4().hex[:8]
    say = print if progress else (lambda *a, **k: None)
    sim: Child | None = None
    proxy: TcpProxy | None = None
    pg: PrivatePostgres | None = None
    admin_url = PG_ADMIN_URL
    if cfg.pg_restarts > 0 and cfg.db == "postgresql":
        pg = PrivatePostgres(workdir / "postgres")
        pg.init()
        pg.start()
        admin_url = pg.url
    try:
        with _database(cfg, workdir, admin_url) as db_url:
            sim, sim_url = _start_simulator(cfg, workdir, dict(os.environ))
            workers_db_url = db_url
            if cfg.pg_outage > 0 and cfg.db == "postgresql":
                # genqueue's processes reach PostgreSQL through a proxy we can take down; this
                # harness keeps watching over a direct connection.
                proxy = TcpProxy("127.0.0.1", make_url(db_url).port or 5432)
                proxy.start()
                workers_db_url = make_url(db_url).set(port=proxy.port).render_as_string(hide_password=False)
            env = _env(cfg, workdir, workers_db_url, redis_url, sim_url)
            root = Root(settings_from(env, database_url=db_url))  # the producer side, wired as the API wires it
            root.migrate()
            sessions, intake, celery = root.sessions, root.intake, root.celery
            t_start = time.monotonic()
            with Stack(env, workdir / "logs") as stack:
                workers = [stack.add(f"worker-{i}", "worker", "--concurrency", str(cfg.concurrency))
                           for i in range(cfg.workers)]
                beat = stack.add("beat", "beat")
                for k in range(1, cfg.beats):  # started by mistake: another host's beat, its own schedule file
                    name = f"beat-{k + 1}"
                    extra = Child(name, genqueue_argv("beat"), dict(env, GENQUEUE_DATA_DIR=str(workdir / name)),
                                  workdir / "logs" / f"{name}.log")
                    stack.children[name] = extra
                    extra.start()
                api: Child | None = None
                http: HttpSubmitter | None = None
                if cfg.api_restarts > 0:
                    port = free_port()
                    api = stack.add("api", "api", "--port", str(port))
                    if not wait_http(f"http://127.0.0.1:{port}/healthz", 30):
                        raise RuntimeError("api did not start")
                    with sessions.begin() as s:
                        _, key = create_key(s, "chaos", Role.ADMIN)
                    http = HttpSubmitter(f"http://127.0.0.1:{port}", key, deadline=t_start + cfg.timeout)
                injector = _Injector(cfg, workers, rclient, report, api=api, proxy=proxy, aof=aof, beat=beat,
                                     progress=plog, pg=pg)
                injector.supervised = [*workers, *(c for n, c in stack.children.items() if n.startswith("beat"))]
                requests = [_request(run_tag, i, cfg.retry_attempts) for i in range(cfg.jobs)]
                # Parts go to three keys in turn: fair shares, a weight and a running limit in play.
                with sessions.begin() as s:
                    part_keys = [create_key(s, f"chaos-{n}", Role.SUBMIT, Limits(**limits))[0].id
                                 for n, limits in enumerate(({}, {"weight": 3}, {"max_running": 40}))]
                full_inputs: dict[str, dict[str, Any]] = {}
                ids: list[str] = []
                waves = max(1, min(cfg.waves, cfg.jobs))
                per_wave = -(-cfg.jobs // waves)
                t0 = time.monotonic()
                next_wave_at = t0
                wave = 0
                last_line = 0.0
                counts: dict[str, int] = {}
                part_start = 0  # where the current wave's next part starts
                deadline = t0 + cfg.timeout
                while True:
                    now = time.monotonic()
                    if wave * per_wave < cfg.jobs and now >= next_wave_at:
                        chunk = requests[wave * per_wave:(wave + 1) * per_wave]
                        try:
                            for start in range(part_start, len(chunk), 500):
                                part = chunk[start:start + 500]
                                if http is not None:
                                    part_ids = http.submit(part, f"{run_tag}-{wave}-{start}",
                                                           lambda: injector.tick(0.0, time.monotonic() - t0))
                                else:  # one transaction per part: all of it is accepted, or none
                                    key_id = part_keys[(wave + start // 500) % len(part_keys)]
                                    part_ids = [j.id for j in intake.submit(part, batch=True, api_key_id=key_id)[0]]
                                for job_id, req in zip(part_ids, part, strict=True):
                                    ids.append(job_id)
                                    full_inputs[job_id] = dict(req.input)
                                part_start = start + 500
                            wave += 1
                            part_start = 0
                            next_wave_at = now + cfg.wave_interval
                        except OperationalError:  # our own PostgreSQL restart: the rest of the wave later
                            root.engine.dispose()
                            next_wave_at = now + 0.5
                    try:
                        with sessions() as s:
                            counts = plog.sample(s)
                    except OperationalError:  # our own PostgreSQL restart: watch again once it is back
                        root.engine.dispose()
                    done = sum(counts.get(t, 0) for t in TERMINAL)
                    elapsed = now - t0
                    injector.tick(done / cfg.jobs, elapsed)
                    if progress and now - last_line >= 5:
                        last_line = now
                        say(f"[{elapsed:6.1f}s] {done}/{cfg.jobs} terminal {dict(sorted(counts.items()))}",
                            flush=True)
                    if done == cfg.jobs and len(ids) == cfg.jobs and not injector.pending:
                        report.drain_seconds = elapsed
                        break
                    if now > deadline:
                        break
                    time.sleep(0.25)
                injector.finish(time.monotonic() - t0)
                say(f"drained: {report.drain_seconds}; checking {len(ids)} jobs", flush=True)
                with sessions() as s:
                    stmt = select(Job).where(Job.id.in_(ids)).options(selectinload(Job.outputs))
                    rows = {j.id: j for j in s.scalars(stmt)}
                    jobs_list = [rows[i] for i in ids]
                    for j in jobs_list:
                        _ = j.outputs  # load while the session is open
                records_json = httpx.get(f"{sim_url}/_sim/predictions", timeout=120).json()
                records = {p["id"]: p for p in records_json["predictions"]}
                report.sim_stats = httpx.get(f"{sim_url}/_sim/stats", timeout=60).json()
                report.sim_stats.pop("gets_per_prediction", None)
                celery.close()
            root.close()
            report.jobs = len(jobs_list)
            report.sim_predictions = len(records)
            report.statuses = dict(Counter(j.status for j in jobs_list))
            report.error_codes = dict(Counter(j.error_code for j in jobs_list if j.error_code))
            report.attempts = {str(k): v for k, v in sorted(Counter(j.attempts for j in jobs_list).items())}
            report.stuck = {j.id: f"{j.status} next_check_at={j.next_check_at} deliveries={j.deliveries}"
                            for j in jobs_list if j.status not in TERMINAL}
            if report.drain_seconds is None:
                report.violations.append(f"not all jobs terminal after {cfg.timeout:.0f}s: {counts}")
            verify(jobs_list, records, full_inputs, report, cfg.retry_attempts)
            _scan_logs(workdir / "logs", report)
            report.recovery = recovery_times(report.faults, plog)
    finally:
        if proxy is not None:
            proxy.down()
        if sim is not None:
            sim.stop()
        if pg is not None:
            pg.close()
        if aof is not None:
            rclient.close()
            aof.stop()  # the AOF stays in the workdir
        else:
            rclient.flushdb()
            rclient.close()
    return report


def main(argv: list[str] | None = None) -> int:
    d = ChaosConfig()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=d.jobs)
    ap.add_argument("--workers", type=int, default=d.workers)
    ap.add_argument("--concurrency", type=int, default=d.concurrency)
    ap.add_argument("--db", choices=["postgresql", "sqlite"], default=d.db)
    ap.add_argument("--redis-db", type=int, default=d.redis_db)
    ap.add_argument("--waves", type=int, default=d.waves)
    ap.add_argument("--wave-interval", type=float, default=d.wave_interval)
    for knob in ("predict_seconds", "start_delay", "jitter", "fail_rate", "fault_429", "fault_5xx", "fault_drop",
                 "fault_first_download", "fault_lost_create"):
        ap.add_argument("--" + knob.replace("_", "-"), type=float, default=getattr(d, knob))
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--retry-attempts", type=int, default=d.retry_attempts,
                    help="every job's retry policy: this many attempts on model_error")
    ap.add_argument("--kills", type=int, default=d.kills)
    ap.add_argument("--flushes", type=int, default=d.flushes)
    ap.add_argument("--pg-outage", type=float, default=d.pg_outage, help="seconds PostgreSQL refuses connections")
    ap.add_argument("--pg-restarts", type=int, default=d.pg_restarts,
                    help="a PostgreSQL of the run's own, stopped and started again --pg-down s later")
    ap.add_argument("--pg-down", type=float, default=d.pg_down)
    ap.add_argument("--api-restarts", type=int, default=d.api_restarts, help="submit over HTTP; SIGKILL the API")
    ap.add_argument("--private-redis", action="store_true",
                    help="a redis-server of the run's own with AOF on (implied by --redis-restarts)")
    ap.add_argument("--redis-restarts", type=int, default=d.redis_restarts,
                    help="SIGTERM the private Redis (connections dropped) and restart it on the same port")
    ap.add_argument("--redis-down", type=float, default=d.redis_down, help="seconds Redis stays down")
    ap.add_argument("--beat-kills", type=int, default=d.beat_kills, help="SIGKILL beat, restart it --beat-down s later")
    ap.add_argument("--beat-down", type=float, default=d.beat_down)
    ap.add_argument("--no-beat-kill-losses", dest="beat_kill_losses", action="store_false",
                    help="do not FLUSHDB and SIGKILL a worker while the beat is down")
    ap.add_argument("--beats", type=int, default=d.beats, help="2 = a second beat started by mistake")
    ap.add_argument("--timeout", type=float, default=d.timeout)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep-db", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    ns = ap.parse_args(argv)
    cfg = ChaosConfig(**{k: v for k, v in vars(ns).items() if k != "json"})
    report = run(cfg, progress=True)
    print(report.summary(), flush=True)
    if ns.json:
        ns.json.write_text(json.dumps(asdict(report) | {"ok": report.ok}, indent=2, default=str))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
