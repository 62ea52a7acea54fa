"""Starting a process as an operator does, with something wrong around it.

* A dependency that does not answer: `genqueue worker` (Redis away) and `genqueue api` (PostgreSQL away)
  each print one line naming what they cannot reach and where, and keep trying (no Celery banner, no
  traceback); they go on once it answers.
* A lost secrets key: a key is written only by the first `migrate` of a database with no sealed
  secrets; a worker started with another data dir, or another SECRETS_KEY, refuses to start in one
  line instead of generating a key that opens nothing (every queued job used to fail
  `secrets_unavailable`), and `migrate` there refuses to write a new one.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
from cryptography.fernet import Fernet
from e2e_support import VERSION, clean_env, describe, job_input, run_cli
from test_cli_errors import assert_one_line_error

from genqueue.cli.stack import free_port
from tests.support.tcpproxy import TcpProxy

SIM_TOKEN = {"REPLICATE_API_TOKEN": "r8_sim_fake_token"}


def _start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "genqueue", *args], env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _first_stderr_line(proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    """The first line the process writes to stderr (it must still be running afterwards)."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline and not line:
        line = proc.stderr.readline().strip()
        if proc.poll() is not None and not line:
            break
    return line


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.kill()
    out, err = proc.communicate(timeout=30)
    return out + err


def test_worker_names_the_redis_it_cannot_reach_and_keeps_trying(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    env = clean_env(GENQUEUE_DATA_DIR=str(tmp_path / "data"), DATABASE_URL=f"sqlite:///{tmp_path}/gq.db",
                    REDIS_URL=f"redis://:not-a-real-password@127.0.0.1:{port}/0", **SIM_TOKEN)
    assert run_cli("migrate", env=env, cwd=tmp_path).returncode == 0
    proc = _start(["worker", "--concurrency", "1"], env, tmp_path)
    try:
        line = _first_stderr_line(proc)
        assert line.startswith(f"genqueue: cannot reach Redis at redis://127.0.0.1:{port}/0 ("), line
        assert line.endswith("retrying every 1 s"), line
        time.sleep(3)
        assert proc.poll() is None  # still trying, as a supervisor expects
    finally:
        rest = _stop(proc)
    assert "not-a-real-password" not in line + rest
    assert "celery@" not in rest and "Traceback" not in rest, rest  # no banner: Celery never started


def test_api_names_the_database_it_cannot_reach_then_serves_once_it_answers(tmp_path: Path, redis_url: str,
                                                                           pg_via_proxy: tuple[str, TcpProxy]) -> None:
    db_url, proxy = pg_via_proxy
    env = clean_env(GENQUEUE_DATA_DIR=str(tmp_path / "data"), DATABASE_URL=db_url, REDIS_URL=redis_url)
    assert run_cli("migrate", env=env, cwd=tmp_path).returncode == 0
    proxy.down()
    port = free_port()
    proc = _start(["api", "--port", str(port)], env, tmp_path)
    try:
        line = _first_stderr_line(proc)
        assert line.startswith("genqueue: cannot reach the database at postgresql"), line
        assert f":{proxy.port}/" in line, line
        assert proc.poll() is None
        proxy.start()
        assert _first_stderr_line(proc).startswith("genqueue: the database reached at postgresql")
        deadline = time.monotonic() + 30
        ready = 0
        while time.monotonic() < deadline and ready != 200:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code
            except httpx.HTTPError:
                time.sleep(0.2)
        assert ready == 200
    finally:
        rest = _stop(proc)
    assert "Traceback" not in rest, rest


def test_a_lost_key_is_refused_not_replaced(tmp_path: Path, redis_url: str) -> None:
    first = clean_env(GENQUEUE_DATA_DIR=str(tmp_path / "data-a"), DATABASE_URL=f"sqlite:///{tmp_path}/gq.db",
                      REDIS_URL=redis_url, **SIM_TOKEN)
    migrated = run_cli("migrate", env=first, cwd=tmp_path)
    assert migrated.returncode == 0 and "new secrets key written" in migrated.stdout, describe(migrated)
    submitted = run_cli("submit", "--version", VERSION, *[a for k, v in job_input("lost key").items()
                                                          for a in ("-i", f"{k}={v}")], env=first, cwd=tmp_path)
    assert submitted.returncode == 0, describe(submitted)

    # Another data dir: no key there. The worker refuses; migrate refuses to make one; no file appears.
    other = dict(first, GENQUEUE_DATA_DIR=str(tmp_path / "data-b"))
    assert_one_line_error(run_cli("worker", env=other, cwd=tmp_path), "no secrets key", "genqueue migrate")
    assert_one_line_error(run_cli("migrate", env=other, cwd=tmp_path), "sealed secrets exist", "SECRETS_KEY")
    assert not (tmp_path / "data-b" / "secrets.key").exists()

    # A key that is not the one the jobs were sealed with: refused, naming the job it cannot open.
    wrong = dict(first, SECRETS_KEY=Fernet.generate_key().decode())
    line = assert_one_line_error(run_cli("worker", env=wrong, cwd=tmp_path), "SECRETS_KEY does not open job")
    assert wrong["SECRETS_KEY"] not in line
    assert_one_line_error(run_cli("api", env=wrong, cwd=tmp_path), "does not open")

    # The right key (the file's, given as SECRETS_KEY) passes the check: the API starts.
    right = dict(first, SECRETS_KEY=(tmp_path / "data-a" / "secrets.key").read_text().strip(),
                 GENQUEUE_DATA_DIR=str(tmp_path / "data-b"))
    port = free_port()
    proc = _start(["api", "--port", str(port)], right, tmp_path)
    try:
        deadline, ok = time.monotonic() + 30, False
        while time.monotonic() < deadline and not ok and proc.poll() is None:
            try:
                ok = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.2)
        assert ok, _stop(proc)
    finally:
        _stop(proc)
