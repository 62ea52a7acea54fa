"""One workload's private world: its own PostgreSQL database (or SQLite file), its own Redis DB index
(flushed before and after), a simulator process, and genqueue's api / worker(s) / beat as separate
processes under `cli.stack.Stack`. Loopback only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis
from sqlalchemy import Engine, create_engine, text

from genqueue.cli.stack import Stack, free_port, genqueue_argv, wait_http
from genqueue.models.status import TERMINAL_NAMES as TERMINAL

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SIM_TOKEN = "r8_sim_fake_token"
VERSION = "jigsawstack/image-generation:43d5bce2e1c97fa1e7d8996187a85cd5c882787989091af3b135c7a16ca23b79"
FAKE_API_KEY = "sk_test_fake_not_a_real_key"
# "Rate limits raised": far above anything two cores can do, on both sides.
RAISED_CREATE_PER_MIN = 6_000_000
RAISED_READ_PER_MIN = 30_000_000


@dataclass
class Options:
    scale: float = 1.0
    db: str = "postgresql"
    workers: int = 1
    concurrency: int = 4
    pool: str = "prefork"
    api_workers: int = 1
    # Default: a private redis-server on a free loopback port (see PrivateRedis). The shared server's DB
    # indexes are all taken by tests (chaos 1-3, outages 4, pipeline 6/7, conftest 8-15, pipeline_check 5),
    # and a foreign Celery worker on our index silently eats our queue.
    redis_base: str = "redis://127.0.0.1:6379"
    redis_db: int = 0
    env: dict[str, str] = field(default_factory=dict)
    keep_logs: bool = False
    submit_with_workers: bool = False
    baseline_threads: int = 32
    webhooks: bool = False
    pace: float = 40.0  # workload 5's arrival rate
    follow_workers: int = 0  # extra worker processes that read only the follow-up queue

    def n(self, full: int) -> int:
        return max(1, round(full * self.scale))


def job_body(prompt: str | None = None) -> dict[str, Any]:
    return {"version": VERSION, "input": {"prompt": prompt or f"ocean {uuid.uuid4().hex}", "aspect_ratio": "16:9",
                                          "output_format": "png", "steps": 4, "api_key": FAKE_API_KEY}}


class Harness:
    def __init__(self, opts: Options, name: str, with_db: bool = True) -> None:
        self.opts = opts
        self.with_db = with_db
        self.name = name
        self.tmp = Path(tempfile.mkdtemp(prefix=f"gq-bench-{name}-"))
        self.logs = self.tmp / "logs"
        self.db_name = f"gq_bench_{name}_{uuid.uuid4().hex[:6]}"
        self.redis_url = f"{opts.redis_base}/{opts.redis_db}"
        self.db_url = ""
        self.engine: Engine | None = None
        self.sim_url = ""
        self.sim_stack: Stack | None = None
        self.stack: Stack | None = None
        self.api_url = ""
        self.api_key = ""
        self.env: dict[str, str] = {}
        self._admin: Engine | None = None

    # --- set-up / tear-down ---------------------------------------------------------------
    def __enter__(self) -> Harness:
        if not self.with_db:
            pass
        elif self.opts.db == "postgresql":
            self._admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with self._admin.connect() as c:
                c.execute(text(f'CREATE DATABASE "{self.db_name}"'))
            self.db_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + self.db_name
        else:
            self.db_url = f"sqlite:///{self.tmp}/genqueue.db"
        r = redis.Redis.from_url(self.redis_url)
        me = r.client_id()
        others = [c for c in r.client_list() if int(c.get("db", -1)) == self.opts.redis_db and int(c["id"]) != me]
        if others:  # someone else's Celery workers on this index would eat our queue (and be flushed)
            raise RuntimeError(f"Redis DB {self.opts.redis_db} is in use by {len(others)} other client(s); "
                               "pick a free index with --redis-db")
        r.flushdb()
        r.close()
        return self

    def __exit__(self, *exc: object) -> None:
        for stack in (self.stack, self.sim_stack):
            if stack is not None:
                with contextlib.suppress(Exception):
                    stack.stop()
        if self.engine is not None:
            self.engine.dispose()
        with contextlib.suppress(Exception):
            redis.Redis.from_url(self.redis_url).flushdb()
        if self._admin is not None:
            with contextlib.suppress(Exception), self._admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
            self._admin.dispose()
        if not self.opts.keep_logs and not any(exc):
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print(f"[bench] logs kept in {self.logs}", file=sys.stderr)

    # --- simulator ------------------------------------------------------------------------
    def start_simulator(self, predict_seconds: float, start_delay: float, **knobs: Any) -> str:
        port = free_port()
        self.sim_url = f"http://127.0.0.1:{port}"
        args = ["simulator", "--port", str(port), "--predict-seconds", str(predict_seconds),
                "--start-delay", str(start_delay)]
        for k, v in knobs.items():
            args += ["--set", f"{k}={json.dumps(v)}"]
        self.sim_stack = Stack(dict(os.environ), self.logs)
        self.sim_stack.add("simulator", *args)
        if not wait_http(f"{self.sim_url}/_sim/stats", 30):
            raise RuntimeError(f"simulator did not start; see {self.logs}/simulator.log")
        return self.sim_url

    def sim_stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.sim_url}/_sim/stats", timeout=60).json())

    def sim_records(self, files: bool) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.sim_url}/_sim/predictions", params={"files": str(files).lower()}, timeout=120)
        return list(r.json()["predictions"])

    # --- genqueue -------------------------------------------------------------------------
    def genqueue_env(self, extra: dict[str, str] | None = None, *, default_limits: bool = False) -> dict[str, str]:
        """`default_limits`: no rate setting at all, as a user gets from the README."""
        env = dict(os.environ)
        env.update(
            GENQUEUE_DATA_DIR=str(self.tmp / "data"), DATABASE_URL=self.db_url, REDIS_URL=self.redis_url,
            STORAGE_URL=f"file://{self.tmp}/outputs", REPLICATE_BASE_URL=f"{self.sim_url or 'http://127.0.0.1:9'}/v1",
            REPLICATE_API_TOKEN=SIM_TOKEN,
            OUTPUT_ALLOWED_HOSTS=urlsplit(self.sim_url or "http://127.0.0.1:9").netloc, OUTPUT_ALLOW_PRIVATE="true",
            GENQUEUE_LOG_LEVEL="WARNING",
            GENQUEUE_CREATE_RATE_PER_MIN=str(RAISED_CREATE_PER_MIN),
            GENQUEUE_READ_RATE_PER_MIN=str(RAISED_READ_PER_MIN),
            GENQUEUE_API_RATE_PER_MIN="100000000",
        )
        if default_limits:
            env.pop("GENQUEUE_CREATE_RATE_PER_MIN")
            env.pop("GENQUEUE_READ_RATE_PER_MIN")
        env.update(extra or {})
        env.update(self.opts.env)  # --env KEY=VALUE wins
        return env

    def cli(self, *args: str) -> str:
        out = subprocess.run(genqueue_argv(*args), env=self.env, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"genqueue {' '.join(args)} failed: {out.stderr.strip()[-2000:]}")
        return out.stdout

    def start_genqueue(self, *, api: bool = True, workers: bool = True, beat: bool = True,
                       env_extra: dict[str, str] | None = None, default_limits: bool = False) -> None:
        port = free_port()
        extra = dict(env_extra or {})
        if api and self.opts.webhooks:
            # Replicate (the simulator) pushes finished predictions to this API; polls become a safety net.
            extra["GENQUEUE_WEBHOOK_URL"] = f"http://127.0.0.1:{port}"
        self.env = self.genqueue_env(extra, default_limits=default_limits)
        self.cli("migrate")
        self.api_key = self.cli("keys", "create", "--name", "bench", "--role", "admin").strip().splitlines()[-1]
        self.engine = create_engine(self.db_url, pool_size=2)
        self.stack = Stack(self.env, self.logs)
        if api:
            self.api_url = f"http://127.0.0.1:{port}"
            self.stack.add("api", "api", "--port", str(port), "--workers", str(self.opts.api_workers))
        if workers:
            for i in range(self.opts.workers):
                self.stack.add(f"worker{i}", "worker", "--concurrency", str(self.opts.concurrency),
                               "--pool", self.opts.pool)
            for i in range(self.opts.follow_workers):
                self.stack.add(f"worker-follow{i}", "worker", "--queues", "follow", "--concurrency", "16",
                               "--pool", "threads")
        if beat:
            self.stack.add("beat", "beat")
        if api and not wait_http(f"{self.api_url}/healthz", 60):
            raise RuntimeError(f"api did not start; see {self.logs}/api.log")

    def roots(self, prefix: str) -> list[int]:
        if self.stack is None:
            return []
        return [c.proc.pid for n, c in self.stack.children.items() if n.startswith(prefix) and c.proc is not None]

    def genqueue_roots(self) -> list[int]:
        return self.roots("api") + self.roots("worker") + self.roots("beat")

    def dead_children(self) -> list[str]:
        stacks = [s for s in (self.stack, self.sim_stack) if s is not None]
        return [n for s in stacks for n, c in s.children.items() if not c.alive]

    # --- producing and observing ----------------------------------------------------------
    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, headers={"Authorization": f"Bearer {self.api_key}"},
                            timeout=120.0)

    def submit_batches(self, n: int, batch: int = 1000) -> list[float]:
        """POST /v1/jobs/batch until n jobs are accepted; returns each request's latency (s)."""
        lat = []
        with self.client() as c:
            for start in range(0, n, batch):
                k = min(batch, n - start)
                t = time.perf_counter()
                r = c.post("/v1/jobs/batch", json={"jobs": [job_body() for _ in range(k)]})
                lat.append(time.perf_counter() - t)
                if r.status_code != 202:
                    raise RuntimeError(f"batch submit answered {r.status_code}: {r.text[:500]}")
        return lat

    def status_counts(self) -> dict[str, int]:
        assert self.engine is not None
        with self.engine.connect() as c:
            return {s: int(n) for s, n in c.execute(text("SELECT status, count(*) FROM jobs GROUP BY status"))}

    def wait_terminal(self, n: int, timeout: float, every: float = 0.5,
                      on_tick: Any = None) -> tuple[bool, dict[str, int]]:
        deadline = time.monotonic() + timeout
        counts: dict[str, int] = {}
        while time.monotonic() < deadline:
            counts = self.status_counts()
            if on_tick is not None:
                on_tick(counts)
            if sum(counts.get(s, 0) for s in TERMINAL) >= n:
                return True, counts
            if self.stack is not None and any(not c.alive for c in self.stack.children.values()):
                print(f"[bench] a genqueue process died: {self.dead_children()}", file=sys.stderr)
            time.sleep(every)
        return False, counts

    def job_rows(self) -> list[dict[str, Any]]:
        assert self.engine is not None
        sql = text("SELECT id, status, prediction_id, created_at, finished_at, end_to_end_time, total_time, "
                   "detection_lag, queue_time, storage_time, start_time, polls, attempts, error_code FROM jobs")
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(sql)]

    def output_shas(self) -> dict[str, list[str]]:
        assert self.engine is not None
        sql = text("SELECT j.prediction_id, o.sha256 FROM job_outputs o JOIN jobs j ON j.id = o.job_id "
                   "ORDER BY j.prediction_id, o.\"index\"")
        out: dict[str, list[str]] = {}
        with self.engine.connect() as c:
            for pid, sha in c.execute(sql):
                out.setdefault(pid, []).append(sha)
        return out


class PrivateRedis:
    """A throw-away redis-server (no persistence) on a free loopback port, for the whole run."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        log_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(log_dir), "--logfile", str(log_dir / "redis.log")], start_new_session=True)
        self.url = f"redis://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("private redis-server did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
