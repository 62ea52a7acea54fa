"""Helpers for the end-to-end tests: every genqueue component runs as its own process, the way an
operator runs it, and is driven only through its public surfaces (CLI, HTTP, the simulator's /_sim)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from genqueue.cli.stack import Stack, free_port, wait_http
from genqueue.models.status import TERMINAL_NAMES as TERMINAL
from genqueue.simulator.config import SimConfig
from genqueue.simulator.server import SimHandle, run_in_thread

VERSION = "jigsawstack/image-generation:43d5bce2e1c97fa1e7d8996187a85cd5c882787989091af3b135c7a16ca23b79"
FAKE_API_KEY = "sk_e2e_fake_not_real"
SIM_TOKEN = "r8_sim_fake_token"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Every variable genqueue reads (core/settings.py): none may leak in from the developer's shell.
_GENQUEUE_VARS = (
    "GENQUEUE_", "DATABASE_URL", "REDIS_URL", "STORAGE_URL", "S3_ENDPOINT_URL", "AWS_", "REPLICATE_",
    "OUTPUT_", "SECRETS_KEY", "LOG_LEVEL",
)


def clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(_GENQUEUE_VARS)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def run_cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`genqueue <args>` as a subprocess (cwd outside the repo so no stray .env is read)."""
    return subprocess.run([sys.executable, "-m", "genqueue", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit={proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"


def read_logs(log_dir: Path) -> str:
    parts = []
    for path in sorted(log_dir.glob("*.log")):
        parts.append(f"===== {path.name} =====\n{path.read_text(errors='replace')[-6000:]}")
    return "\n".join(parts)


@dataclass
class LiveStack:
    env: dict[str, str]
    tmp: Path
    db_url: str
    api_url: str
    key: str
    sim: SimHandle
    stack: Stack
    log_dir: Path

    @property
    def sim_url(self) -> str:
        return self.sim.base_url

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30)

    def set_sim(self, **knobs: Any) -> None:
        httpx.post(f"{self.sim_url}/_sim/config", json=knobs, timeout=10).raise_for_status()

    def sim_record(self, prediction_id: str) -> dict[str, Any]:
        resp = httpx.get(f"{self.sim_url}/_sim/predictions/{prediction_id}", timeout=10)
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    def sim_records(self) -> dict[str, dict[str, Any]]:
        data = httpx.get(f"{self.sim_url}/_sim/predictions", timeout=30).json()
        return {p["id"]: p for p in data["predictions"]}

    def logs(self) -> str:
        return read_logs(self.log_dir)

    def wait_job(self, client: httpx.Client, job_id: str, statuses: tuple[str, ...] = TERMINAL,
                 timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            resp = client.get(f"/v1/jobs/{job_id}")
            assert resp.status_code == 200, resp.text
            job = resp.json()
            if job["status"] in statuses:
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} not in {statuses} after {timeout}s: {job}\n{self.logs()}")


@contextmanager
def live_stack(tmp: Path, db_url: str, redis_url: str, *, concurrency: int = 2,
               sim_config: SimConfig | None = None, beat: bool = False) -> Iterator[LiveStack]:
    """Simulator (thread) + `genqueue migrate` + an admin key + `genqueue api` + `genqueue worker`
    (+ `genqueue beat`, whose sweep also records finished batches)."""
    sim = run_in_thread(sim_config or SimConfig(start_delay=0.2, predict_seconds=0.5))
    try:
        env = clean_env(
            DATABASE_URL=db_url, REDIS_URL=redis_url, STORAGE_URL=f"file://{tmp}/outputs",
            GENQUEUE_DATA_DIR=str(tmp / "data"), REPLICATE_BASE_URL=f"{sim.base_url}/v1",
            REPLICATE_API_TOKEN=SIM_TOKEN,
            OUTPUT_ALLOWED_HOSTS=urlsplit(sim.base_url).netloc, OUTPUT_ALLOW_PRIVATE="true",
            GENQUEUE_LOG_LEVEL="INFO",
        )
        migrated = run_cli("migrate", env=env, cwd=tmp)
        assert migrated.returncode == 0, describe(migrated)
        created = run_cli("keys", "create", "--name", "e2e", "--role", "admin", env=env, cwd=tmp)
        assert created.returncode == 0, describe(created)
        key = created.stdout.strip().splitlines()[-1].strip()
        assert key and " " not in key, describe(created)
        port = free_port()
        log_dir = tmp / "logs"
        with Stack(env, log_dir) as stack:
            stack.add("api", "api", "--port", str(port))
            stack.add("worker", "worker", "--concurrency", str(concurrency))
            if beat:
                stack.add("beat", "beat")
            api_url = f"http://127.0.0.1:{port}"
            if not wait_http(f"{api_url}/healthz", 90):
                raise AssertionError(f"api did not start\n{read_logs(log_dir)}")
            live = LiveStack(env, tmp, db_url, api_url, key, sim, stack, log_dir)
            try:
                yield live
            except BaseException:
                print(read_logs(log_dir))  # shown by pytest on failure
                raise
    finally:
        sim.stop()


def job_input(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"prompt": prompt, "aspect_ratio": "16:9", "output_format": "png", "steps": 4,
            "api_key": FAKE_API_KEY, **extra}
