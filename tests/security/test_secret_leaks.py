"""Secrets never leave their sealed form: a real run, then a search of everything it left behind.

Real parts: the simulator (accepting only this run's unique Replicate token), Celery worker and beat
processes, the API as a uvicorn subprocess (`genqueue api`), PostgreSQL, and a private redis-server
whose every command is recorded with MONITOR. Jobs carry unique secrets (`sk_leakcheck_<hex>`); they
succeed, fail on Replicate, get rejected by Replicate, get canceled, go through injected 429/5xx/lost
creates (the lost-create path reads Replicate's list, whose answers echo the input), and bad requests
carrying the secrets get 4xx answers. Then the secrets, the token, the API keys and the Fernet key are
searched for in: a pg_dump and every row of every table, every file the run wrote (worker/beat/api
logs included), every Redis key and value left, every command Redis received (Celery message bodies
base64-decoded), and every HTTP response (status, headers, body). Expected hits: 0 everywhere.

Each needle is searched as its whole and as its random core (the hex part), so a partial mask such as
the log filter's `***_<hex>` still counts as a leak. Positive controls prove each place was searched.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from cryptography.fernet import Fernet
from sec_support import VERSION
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from genqueue.cli.stack import free_port, wait_http
from genqueue.models.keys import Role, create_key
from genqueue.simulator.config import SimConfig
from genqueue.simulator.server import run_in_thread
from tests.support.pipeline import TERMINAL, Pipeline, pipeline

_B64_RUN = re.compile(rb"[A-Za-z0-9+/]{16,}={0,2}")


# ---- recording Redis -------------------------------------------------------------------------------


class RedisMonitor:
    """Every command the (private) Redis server receives, via MONITOR on a raw socket."""

    def __init__(self, url: str) -> None:
        u = make_url(url.replace("redis://", "redis+x://", 1))
        self._sock = socket.create_connection((u.host or "127.0.0.1", u.port or 6379), timeout=5)
        self._sock.sendall(b"MONITOR\r\n")
        first = self._sock.recv(5)
        assert first.startswith(b"+OK"), first
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self.data = bytearray()
        self._thread = threading.Thread(target=self._run, name="redis-monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            self.data += chunk

    def stop(self) -> bytes:
        time.sleep(0.3)
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        return bytes(self.data)


def b64_decoded(blob: bytes) -> bytes:
    """Every base64-looking run in `blob`, decoded (Celery/kombu message bodies are base64 JSON)."""
    out = []
    for m in _B64_RUN.finditer(blob):
        run = m.group(0)
        for cut in (0, 1, 2, 3):  # the run may start mid-token; try every alignment
            piece = run[cut:]
            piece = piece[: len(piece) - len(piece) % 4]
            try:
                out.append(base64.b64decode(piece, validate=True))
            except (binascii.Error, ValueError):
                continue
    return b"\n".join(out)


def redis_snapshot(url: str) -> tuple[list[tuple[str, bytes]], int]:
    """(key, everything stored under it) for every key in the DB, read per type."""
    r = redis.Redis.from_url(url)
    items: list[tuple[str, bytes]] = []
    try:
        for key in r.scan_iter(count=1000):
            kind = r.type(key).decode()
            if kind == "string":
                parts = [r.get(key) or b""]
            elif kind == "list":
                parts = list(r.lrange(key, 0, -1))
            elif kind == "hash":
                parts = [x for kv in r.hgetall(key).items() for x in kv]
            elif kind == "set":
                parts = list(r.smembers(key))
            elif kind == "zset":
                parts = [m for m, _ in r.zrange(key, 0, -1, withscores=True)]
            elif kind == "stream":
                parts = [json.dumps([[i.decode(), {k.decode(): v.decode() for k, v in f.items()}]
                                     for i, f in r.xrange(key)]).encode()]
            else:
                parts = [repr(r.dump(key)).encode()]
            blob = b"\n".join(p if isinstance(p, bytes) else str(p).encode() for p in parts)
            items.append((key.decode(errors="replace"), key + b"\n" + blob))
        return items, len(items)
    finally:
        r.close()


# ---- the search ------------------------------------------------------------------------------------


@dataclass
class Needle:
    label: str
    forms: list[bytes]  # whole value, its random core, JSON-escaped form

    @classmethod
    def of(cls, label: str, value: str, core: str) -> Needle:
        forms = {value.encode(), core.encode(), json.dumps(value)[1:-1].encode()}
        return cls(label, sorted(forms))


@dataclass
class Search:
    needles: list[Needle]
    places: dict[str, int] = field(default_factory=dict)  # place kind -> items searched
    sizes: dict[str, int] = field(default_factory=dict)  # place kind -> bytes searched
    hits: list[str] = field(default_factory=list)

    def scan(self, kind: str, name: str, blob: bytes) -> None:
        self.places[kind] = self.places.get(kind, 0) + 1
        self.sizes[kind] = self.sizes.get(kind, 0) + len(blob)
        low = blob.lower()
        for needle in self.needles:
            if any(f.lower() in low for f in needle.forms):
                self.hits.append(f"{needle.label} in {kind}: {name}")


@dataclass
class Recorded:
    responses: list[httpx.Response] = field(default_factory=list)

    def hook(self, response: httpx.Response) -> None:
        response.read()
        self.responses.append(response)


def _as_blob(resp: httpx.Response) -> bytes:
    head = f"HTTP {resp.status_code}\n".encode()  # not the request line: we sent that ourselves
    headers = b"".join(k + b": " + v + b"\n" for k, v in resp.headers.raw)
    return head + headers + b"\n" + resp.content


# ---- the run ---------------------------------------------------------------------------------------


@dataclass
class Run:
    p: Pipeline
    api: httpx.Client
    auth: dict[str, dict[str, str]]
    job_ids: list[str] = field(default_factory=list)

    def job(self, secret: str, who: str = "alice", version: str = VERSION, **extra: Any) -> dict[str, Any]:
        body = {"version": version, "input": {"prompt": f"leak check {uuid.uuid4().hex[:6]}", "api_key": secret,
                                              **extra}}
        return body

    def create(self, body: dict[str, Any], who: str = "alice", **headers: str) -> str:
        r = self.api.post("/v1/jobs", json=body, headers={**self.auth[who], **headers})
        assert r.status_code == 202, r.text
        self.job_ids.append(r.json()["id"])
        return str(r.json()["id"])


def _make_keys(p: Pipeline) -> dict[str, str]:
    keys = {}
    with p.sessions.begin() as s:
        for name, role in (("alice", Role.SUBMIT), ("admin", Role.ADMIN)):
            _, plaintext = create_key(s, name, role)
            keys[name] = plaintext
    return keys


def _exercise(run: Run, secrets: list[str]) -> None:
    p, api, alice = run.p, run.api, run.auth["alice"]
    it = iter(secrets)
    # 1. jobs that succeed, one of them with an Idempotency-Key replayed
    for _ in range(3):
        run.create(run.job(next(it)))
    s = next(it)
    body = run.job(s)
    run.create(body, **{"Idempotency-Key": "leak-idem-1"})
    replay = api.post("/v1/jobs", json=body, headers={**alice, "Idempotency-Key": "leak-idem-1"})
    assert replay.status_code == 202 and replay.headers.get("idempotent-replayed") == "true"
    # 2. a batch through injected 429s, 5xxs and lost creates (reconciled through Replicate's list)
    p.sim(fault_429=0.2, fault_5xx=0.2, fault_lost_create=0.3)
    r = api.post("/v1/jobs/batch", json={"jobs": [run.job(next(it)) for _ in range(4)]}, headers=alice)
    assert r.status_code == 202, r.text
    run.job_ids += [j["id"] for j in r.json()["jobs"]]
    p.wait(run.job_ids, timeout=240)
    p.sim(fault_429=0.0, fault_5xx=0.0, fault_lost_create=0.0)
    # 3. a prediction that fails on Replicate, and one Replicate rejects (unknown version: 422 at create)
    p.sim(fail_rate=1.0)
    failed = run.create(run.job(next(it)))
    rejected = run.create(run.job(next(it), version="a" * 64))
    p.wait([failed, rejected], timeout=90)
    p.sim(fail_rate=0.0)
    # 4. a running job canceled through the API
    p.sim(predict_seconds=60.0)
    canceled = run.create(run.job(next(it)))
    p.wait([canceled], statuses=("running",), timeout=60)
    c = api.post(f"/v1/jobs/{canceled}/cancel", headers=alice)
    assert c.status_code == 202, c.text
    p.wait([canceled], timeout=60)
    p.sim(predict_seconds=0.3)
    # 5. requests the API refuses, each carrying a secret
    bad = next(it)
    json_h = {**alice, "Content-Type": "application/json"}
    refusals = [
        api.post("/v1/jobs", json=run.job(bad, steps=1000), headers=alice),
        api.post("/v1/jobs", json=run.job(bad + "x" * 600), headers=alice),
        api.post("/v1/jobs", json={**run.job(bad), "extra_field": bad}, headers=alice),
        api.post("/v1/jobs", json={"version": bad, "input": {"api_key": bad}}, headers=alice),
        api.post("/v1/jobs", content=('{"input": {"api_key": "' + bad + '", ').encode(), headers=json_h),
        api.post("/v1/jobs", content=json.dumps(run.job(bad, pad="p" * (5 * 1024 * 1024))).encode(),
                 headers=json_h),
        api.post("/v1/jobs/batch", json={"jobs": [run.job(bad, width=1)]}, headers=alice),
        api.post("/v1/jobs", json=run.job(bad), headers={"Authorization": f"Bearer {bad}"}),
        api.get(f"/v1/jobs/{bad}", headers=alice),
        api.get("/v1/jobs", params={"cursor": bad, "model": bad}, headers=alice),
    ]
    assert [x.status_code for x in refusals] == [422, 422, 422, 422, 400, 413, 422, 401, 404, 422], \
        [(x.status_code, x.text[:200]) for x in refusals]
    # 6. everything a caller can read back
    jobs = p.wait(run.job_ids, timeout=120, statuses=TERMINAL)
    for job in jobs:
        view = api.get(f"/v1/jobs/{job.id}", headers=alice).json()
        assert view["input"]["api_key"] == "***"
        for out in view["outputs"]:
            assert api.get(out["url"], headers=alice).status_code == 200
    api.get("/v1/jobs", params={"limit": 200}, headers=alice)
    api.get("/v1/jobs", params={"limit": 200}, headers=run.auth["admin"])
    statuses = sorted(j.status for j in jobs)
    assert statuses.count("succeeded") == 8 and statuses.count("failed") == 2 and statuses.count("canceled") == 1, \
        [(j.status, j.error_code, j.error_message) for j in jobs]


def _pg_dump(db_url: str) -> bytes:
    u = make_url(db_url)
    cmd = ["pg_dump", "-h", u.host or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username or "postgres",
           "--no-owner", u.database or ""]
    out = subprocess.run(cmd, capture_output=True, timeout=120, check=True)
    return out.stdout


def _all_rows(db_url: str) -> Iterator[tuple[str, int, bytes]]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            tables = [r[0] for r in conn.execute(text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"))]
            for table in tables:
                rows = [r[0] for r in conn.execute(text(f'SELECT t::text FROM "{table}" t'))]
                yield table, len(rows), "\n".join(rows).encode()
    finally:
        engine.dispose()


def test_no_secret_reaches_db_logs_redis_or_responses(tmp_path: Path, pg_url: str, sec_redis_url: str) -> None:
    token = "r8_leakcheck_" + uuid.uuid4().hex
    secrets = [f"sk_leakcheck_{uuid.uuid4().hex}" for _ in range(12)]
    fernet_key = Fernet.generate_key().decode()
    monitor = RedisMonitor(sec_redis_url)
    sim = run_in_thread(SimConfig(tokens={token}, start_delay=0.1, predict_seconds=0.3, min_cancel_after=1.0))
    recorded = Recorded()
    env_extra = {"REPLICATE_API_TOKEN": token, "SECRETS_KEY": fernet_key, "GENQUEUE_LOG_LEVEL": "DEBUG"}
    try:
        with pipeline(tmp_path, pg_url, sec_redis_url, sim.base_url, concurrency=4, beat=True,
                      env_extra=env_extra) as p:
            port = free_port()
            p.stack.add("api", "api", "--host", "127.0.0.1", "--port", str(port))
            assert wait_http(f"http://127.0.0.1:{port}/healthz", 60), "API did not start"
            keys = _make_keys(p)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                              event_hooks={"response": [recorded.hook]}) as api:
                run = Run(p, api, {k: {"Authorization": f"Bearer {v}"} for k, v in keys.items()})
                _exercise(run, secrets)
                sim_inputs = [rec.input for rec in sim.state.store.records.values()]
                sim_stats = {"requests": sim.state.stats.requests, "creates_lost": sim.state.stats.creates_lost,
                             "throttled_faults": sim.state.stats.throttled_faults}
    finally:
        sim.stop()
        traffic = monitor.stop()

    # Positive control: the secrets really travelled to "Replicate" (the simulator) in the clear.
    # (#9 was rejected by Replicate at create, #11 only rode on refused API requests.)
    sent = {i.get("api_key") for i in sim_inputs}
    assert set(secrets) - {secrets[9], secrets[11]} <= sent, "the jobs did not carry their secrets to Replicate"

    needles = [Needle.of(f"secret#{i}", s, s.rsplit("_", 1)[1]) for i, s in enumerate(secrets)]
    needles.append(Needle.of("replicate-token", token, token.rsplit("_", 1)[1]))
    needles += [Needle.of(f"api-key:{name}", k, k[3:]) for name, k in keys.items()]
    needles.append(Needle.of("fernet-key", fernet_key, fernet_key.rstrip("=")))
    search = Search(needles)

    dump = _pg_dump(pg_url)
    search.scan("pg_dump", "database", dump)
    row_count = 0
    for table, n, blob in _all_rows(pg_url):
        row_count += n
        search.scan("table", table, blob)
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    logs = [f for f in files if f.suffix == ".log"]
    for f in files:
        data = f.read_bytes()
        search.scan("log" if f in logs else "file", str(f.relative_to(tmp_path)), data)
    items, n_keys = redis_snapshot(sec_redis_url)
    for key, blob in items:
        search.scan("redis-key", key, blob + b"\n" + b64_decoded(blob))
    commands = traffic.count(b"\r\n")
    search.scan("redis-command", "MONITOR stream", traffic)
    decoded = b64_decoded(traffic)
    search.scan("redis-command-b64", "MONITOR stream, base64-decoded", decoded)
    for i, resp in enumerate(recorded.responses):
        label = f"#{i} {resp.status_code} {resp.request.method} /{resp.request.url.path.split('/')[-1][:8]}..."
        search.scan("http-response", label, _as_blob(resp))

    # Positive controls: each place really holds this run's data (the search is not looking at nothing).
    assert all(jid.encode() in dump for jid in run.job_ids)
    assert any(jid.encode() in decoded for jid in run.job_ids), "Celery bodies were not decoded"
    assert b"genqueue.submit" in traffic
    worker_log = (tmp_path / "logs" / "worker.log").read_bytes()
    assert any(jid.encode() in worker_log for jid in run.job_ids)
    assert b"input_sealed" in dump and row_count > 0 and n_keys > 0

    figures = {
        "secrets": len(secrets), "jobs": len(run.job_ids), "tables": search.places.get("table", 0),
        "rows": row_count, "pg_dump_bytes": len(dump), "log_files": [str(f.relative_to(tmp_path)) for f in logs],
        "log_bytes": search.sizes.get("log", 0), "other_files": search.places.get("file", 0),
        "redis_keys_at_end": n_keys, "redis_commands_monitored": commands,
        "redis_monitor_bytes": len(traffic), "http_responses": len(recorded.responses),
        "http_response_bytes": search.sizes.get("http-response", 0), "replicate": sim_stats,
        "hits": len(search.hits),
    }
    print("\nsecret-leak search figures:", json.dumps(figures, indent=1))
    assert search.hits == [], "\n".join(search.hits[:50])
