"""Many concurrent `Prefer: wait` waiters on ONE API process: what they cost and how fast they learn.

N jobs are submitted (predictions take --predict-seconds on the simulator, so every waiter is in
place before the first job ends), then N clients each hold `GET /v1/jobs/{id}` with `Prefer: wait=60`
(asked again if a wait runs out) until the job is terminal. Reported:
- extra RSS of the API process tree: peak while the N waits are held, minus its RSS before them;
- API CPU to place a wait (the request, its key lookup and first read), per waiter;
- API CPU while the N waits are only held (no job ending yet), per second;
- API CPU per finished job: from the first job ending to the last answer, over N (the wake-up, the
  final read and the answer), next to the CPU of one plain `GET /v1/jobs/{id}` for reference;
- finished_at -> answer delay, p50/p95/max (finished_at is PostgreSQL's clock, the answer time this
  process's; same host). The waiting clients run in this process; at large N their own event loop
  adds to the delay, so the figure is an upper bound.

    .venv/bin/python -m benchmarks.waiters --waiters 200     # what was run here
    .venv/bin/python -m benchmarks.waiters --waiters 2000    # the full run (2 cores: ~3 min)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from benchmarks import procs
from benchmarks.harness import TERMINAL, Harness, Options, PrivateRedis
from benchmarks.stats import pcts
from genqueue.core.events import STREAM, decode


def _log(msg: str) -> None:
    print(f"[waiters {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


_REISSUED = [0]  # waits that ran out (60 s) before their job ended and were asked again


async def _wait_one(client: httpx.AsyncClient, job_id: str, out: dict[str, tuple[dict[str, Any], float]]) -> None:
    for attempt in range(1_000):
        if attempt:
            _REISSUED[0] += 1
        resp = await client.get(f"/v1/jobs/{job_id}", headers={"Prefer": "wait=60"})
        answered = time.time()
        resp.raise_for_status()
        job = resp.json()
        if job["status"] in TERMINAL:
            out[job_id] = (job, answered)
            return


async def _plain_gets(h: Harness, ids: list[str], concurrency: int = 24) -> None:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=h.api_url, headers={"Authorization": f"Bearer {h.api_key}"},
                                 timeout=60) as client:
        async def one(job_id: str) -> None:
            async with sem:
                (await client.get(f"/v1/jobs/{job_id}")).raise_for_status()

        await asyncio.gather(*(one(i) for i in ids))


async def _busy_then_quiet(cpu: Any, step: float = 0.5, timeout: float = 120.0) -> bool:
    """Until the API, having been busy (> 20% of a core), is quiet (< 4%) for one step: the waits are
    placed. (Quiet alone could be before the first request arrived.)"""
    busy, last, deadline = False, cpu(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(step)
        now = cpu()
        used, last = now - last, now
        if used > 0.2 * step:
            busy = True
        elif busy and used < 0.04 * step:
            return True
    return False


async def _wait_all(h: Harness, ids: list[str], sampler: procs.Sampler) -> dict[str, Any]:
    n = len(ids)
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    out: dict[str, tuple[dict[str, Any], float]] = {}
    api_cpu = lambda: sampler.cpu()["api"]  # noqa: E731
    async with httpx.AsyncClient(base_url=h.api_url, headers={"Authorization": f"Bearer {h.api_key}"},
                                 timeout=httpx.Timeout(90.0, connect=60.0), limits=limits) as client:
        cpu0, t0 = api_cpu(), time.monotonic()
        tasks = [asyncio.create_task(_wait_one(client, i, out)) for i in ids]
        # Every wait is in place once the API has gone quiet (its first read done for all of them).
        settled = await _busy_then_quiet(api_cpu)
        cpu1, t1 = api_cpu(), time.monotonic()
        _log(f"waits in place after {t1 - t0:.1f} s (settled={settled}, answered so far {len(out)})")
        await asyncio.sleep(3.0)
        cpu2, t2 = api_cpu(), time.monotonic()
        held_early = len(out)
        await asyncio.gather(*tasks)
        cpu3 = api_cpu()
    cpu4 = api_cpu()
    await _plain_gets(h, ids)
    plain_ms = (api_cpu() - cpu4) * 1000 / n
    delays = [(answered - datetime.fromisoformat(job["finished_at"]).timestamp()) * 1000
              for job, answered in out.values()]
    # Where the delay goes: a stream entry's id is Redis's clock (ms) when the writer published it.
    published = _terminal_events(h)
    to_event = [published[i] - datetime.fromisoformat(j["finished_at"]).timestamp() * 1000
                for i, (j, _) in out.items() if i in published]
    event_to_answer = [answered * 1000 - published[i] for i, (_, answered) in out.items() if i in published]
    finished = [datetime.fromisoformat(job["finished_at"]).timestamp() for job, _ in out.values()]
    statuses: dict[str, int] = {}
    for job, _ in out.values():
        statuses[job["status"]] = statuses.get(job["status"], 0) + 1
    return {
        "answered": n if len(out) == n else len(out), "statuses": statuses,
        "ended_before_hold_window_closed": held_early,
        "seconds_to_place_all_waits": round(t1 - t0, 1),
        "api_cpu_ms_per_wait_placed": round((cpu1 - cpu0) * 1000 / n, 3),
        "api_cpu_ms_per_s_while_held": round((cpu2 - cpu1) * 1000 / (t2 - t1), 2),
        "api_cpu_ms_per_finished_job": round((cpu3 - cpu2) * 1000 / n, 3),
        "api_cpu_ms_per_plain_get_for_reference": round(plain_ms, 3),
        "waits_asked_again_after_60s": _REISSUED[0],
        "jobs_finished_within_s": round(max(finished) - min(finished), 1) if finished else None,
        "finished_to_answer_ms": {**pcts(delays, 0.5, 0.95, 0.99, digits=1),
                                  "max": round(max(delays), 1) if delays else None},
        "finished_to_published_ms": pcts(to_event, 0.5, 0.95, digits=1),
        "published_to_answer_ms": pcts(event_to_answer, 0.5, 0.95, digits=1),
    }


def _terminal_events(h: Harness) -> dict[str, float]:
    client = redis.Redis.from_url(h.redis_url)
    try:
        out: dict[str, float] = {}
        for entry_id, fields in client.xrange(STREAM):
            event = decode(entry_id, fields)
            if event is not None and event.status in TERMINAL:
                out.setdefault(event.job_id, float(event.id.split("-")[0]))
        return out
    finally:
        client.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--waiters", type=int, default=2000)
    ap.add_argument("--predict-seconds", type=float, default=0.0,
                    help="prediction duration (default: long enough for every wait to be in place)")
    ap.add_argument("--db", default="postgresql", choices=["postgresql", "sqlite"])
    ap.add_argument("--concurrency", type=int, default=32, help="the worker's threads")
    args = ap.parse_args()
    n = args.waiters
    predict = args.predict_seconds or max(20.0, n / 40)
    redis_dir = Path(tempfile.mkdtemp(prefix="gq-waiters-redis-"))
    private = PrivateRedis(redis_dir)
    opts = Options(db=args.db, workers=1, concurrency=args.concurrency, pool="threads", redis_base=private.url)
    try:
        with Harness(opts, "waiters") as h:
            h.start_simulator(predict_seconds=predict, start_delay=0.2,
                              create_limit_per_min=6_000_000, read_limit_per_min=30_000_000)
            h.start_genqueue()
            # Sparse, RSS only: reading /proc holds this process's GIL, and the waiting clients share it.
            sampler = procs.Sampler({"api": lambda: h.roots("api")}, interval=1.0, with_pss=False).start()
            with h.client() as c:  # warm the API (imports, pools) before its baseline is taken
                for _ in range(20):
                    c.get("/v1/jobs", params={"limit": 1}).raise_for_status()
            time.sleep(1.0)
            sampler.sample()
            baseline = sampler.peaks["api"].rss
            _log(f"submitting {n} jobs ({predict:.0f} s predictions)")
            t0 = time.monotonic()
            h.submit_batches(n, batch=500)
            ids = [r["id"] for r in h.job_rows()]
            sampler.peaks.clear()
            _log(f"{n} waiters")
            result = asyncio.run(_wait_all(h, ids, sampler))
            sampler.stop()
            result.update(
                waiters=n, predict_seconds=predict, db=args.db,
                api_rss_before_mb=round(baseline / 2**20, 1),
                api_extra_rss_mb=round((sampler.peaks["api"].rss - baseline) / 2**20, 1),
                wall_seconds=round(time.monotonic() - t0, 1),
            )
            print(json.dumps(result, indent=2))
            return 0 if result["answered"] == n else 1
    finally:
        private.stop()
        shutil.rmtree(redis_dir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
