"""Object storage failing under a real pipeline (simulator, Celery worker and beat processes, PostgreSQL,
a redis-server of the test's own):

* S3-compatible storage (SeaweedFS) SIGKILLed while a batch of jobs is being copied, restarted on the
  same ports 10 s later: every job ends succeeded with its bytes really in S3, one prediction per job;
  the recovery time (fault cleared -> finished_at of the jobs it held up) is printed, not asserted;
* local storage's filesystem full (a 2 MiB tmpfs, or a loop device): jobs that can't write wait, a job
  whose deadline passes while it waits fails as `storage_error`, no partial file is ever an output,
  and once space is freed the waiting jobs complete.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import select

from genqueue.models.status import TERMINAL_NAMES as TERMINAL
from genqueue.models.tables import Job
from genqueue.simulator.config import SimConfig
from genqueue.simulator.server import run_in_thread
from tests.support.pipeline import Pipeline, pipeline
from tests.support.storage_faults import (
    ScratchRedis,
    Seaweed,
    check_against_simulator,
    describe,
    file_path,
    fill,
    recovery,
    sha256_of,
    small_filesystem,
    stray_files,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

S3_JOBS = 50
S3_DOWN = 10.0  # seconds between the SIGKILL and the restart
BUCKET = "gq-chaos-storage"


@pytest.fixture
def scratch_redis() -> Iterator[str]:
    server = ScratchRedis()
    try:
        yield f"{server.url}/0"
    finally:
        server.close()


def _statuses(p: Pipeline, ids: list[str]) -> dict[str, str]:
    with p.sessions() as s:
        return {row.id: row.status for row in s.execute(select(Job.id, Job.status).where(Job.id.in_(ids)))}


def _wait_count(p: Pipeline, ids: list[str], status: str, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (seen := Counter(_statuses(p, ids).values()))[status] < n:
        assert time.monotonic() < deadline, f"fewer than {n} jobs {status} after {timeout}s: {dict(seen)}"
        time.sleep(0.05)


def _sweeper_store_resends(p: Pipeline) -> int:
    """Store steps the sweeper re-sent (its log line: "sweep re-sent 3 overdue steps {'store': 3} ...")."""
    assert p.stack.log_dir is not None
    text = "".join(f.read_text(errors="replace") for f in p.stack.log_dir.glob("*.log"))
    return sum(int(n) for n in re.findall(r"sweep re-sent .*'store': (\d+)", text))


def test_s3_killed_mid_copies_and_restarted_loses_nothing(tmp_path: Path, pg_url: str, scratch_redis: str) -> None:
    weed = Seaweed(tmp_path / "weed")
    sim = run_in_thread(SimConfig(start_delay=0.2, predict_seconds=0.5, jitter=0.3, seed=11))
    try:
        weed.start()
        weed.client().create_bucket(Bucket=BUCKET)
        with pipeline(tmp_path, pg_url, scratch_redis, sim.base_url, beat=True, concurrency=4,
                      env_extra=weed.env(BUCKET, "outputs")) as p:
            ids = p.submit(1)
            p.wait(ids, timeout=120)  # the worker is up and S3 works
            # The batch arrives over ~2.5 s, so copies are spread out; the kill comes once a few are done.
            for _ in range(5):
                ids += p.submit(S3_JOBS // 5)
                if sum(1 for s in _statuses(p, ids).values() if s == "succeeded") > 1:
                    break
                time.sleep(0.5)
            _wait_count(p, ids, "succeeded", 2, timeout=60)
            weed.kill()
            if len(ids) <= S3_JOBS:  # the rest of the batch arrives during the outage
                ids += p.submit(S3_JOBS + 1 - len(ids))
            at_kill = Counter(_statuses(p, ids).values())
            time.sleep(S3_DOWN)
            active = {i for i, s in _statuses(p, ids).items() if s not in TERMINAL}
            restart_at = time.time()
            weed.start()
            ready_at = time.time()
            cleared_at = weed.wait_writable(BUCKET)
            at_clear = Counter(_statuses(p, ids).values())
            jobs = p.wait(ids, timeout=180)
            records = p.sim_records()
            resent = _sweeper_store_resends(p)

        s3 = weed.client()
        problems = check_against_simulator(jobs, records)
        for job in jobs:
            if job.status != "succeeded":
                problems.append(f"{job.id}: {job.status} {job.error_code} {job.error_message}")
                continue
            for out in job.outputs:
                key = out.storage_uri.removeprefix(f"s3://{BUCKET}/")
                body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
                if (len(body), sha256_of(body)) != (out.size, out.sha256):
                    problems.append(f"{job.id}: S3 holds {len(body)} bytes {sha256_of(body)}, "
                                    f"job records {out.size} {out.sha256}")
        fig = recovery(jobs, active, cleared_at)
        print(f"\nS3 outage: SIGKILL with {dict(at_kill)}; down {S3_DOWN:.0f}s; restarted: listing answered "
              f"after {ready_at - restart_at:.2f}s, first PUT accepted after {cleared_at - restart_at:.2f}s; "
              f"statuses then {dict(at_clear)}")
        print(f"recovery after S3 is back (jobs active at the restart): {describe(fig)}")
        print(f"final: {Counter(j.status for j in jobs)}; {len(records)} predictions for {len(jobs)} jobs; "
              f"sweeper re-sent {resent} store steps")
        assert problems == [], problems
        assert fig["n"] > 0, "the outage held up no job: the kill came too late to test anything"
    finally:
        sim.stop()
        weed.close()


DISK_JOBS = 30
DEADLINE_JOBS = 5
DEADLINE_SECONDS = 12.0


def test_local_storage_disk_full_waits_then_completes(tmp_path: Path, pg_url: str, scratch_redis: str) -> None:
    with ExitStack() as cleanup:
        try:
            root, how = cleanup.enter_context(small_filesystem(tmp_path / "outputs-fs", size_mib=2))
        except OSError as exc:
            pytest.skip(f"no small filesystem can be mounted here: {exc}")
        sim = run_in_thread(SimConfig(start_delay=0.2, predict_seconds=0.5, jitter=0.3, seed=12))
        cleanup.callback(sim.stop)
        outputs = root / "outputs"
        outputs.mkdir()
        with pipeline(tmp_path, pg_url, scratch_redis, sim.base_url, beat=True, concurrency=4,
                      env_extra={"STORAGE_URL": f"file://{outputs}"}) as p:
            warm = p.submit(1)
            p.wait(warm, timeout=120)
            # Room for a few outputs only (tmpfs counts whole pages): the batch overflows the disk.
            one = sum(o.size for o in p.jobs(warm)[0].outputs)
            filler = fill(root, leave=4 * max(4096, one))
            ids = p.submit(DISK_JOBS)
            _wait_count(p, ids, "storing", 1, timeout=60)
            time.sleep(3)  # they have met ENOSPC more than once by now
            # Jobs that give up: their deadline passes while the disk is still full.
            doomed = p.submit(DEADLINE_JOBS, deadline_seconds=DEADLINE_SECONDS)
            done_doomed = p.wait(doomed, timeout=DEADLINE_SECONDS + 60)
            while_full = Counter(_statuses(p, ids).values())
            # A file left behind by a failed write (not one a retry has open this instant): there twice.
            recorded = _recorded_files(p.jobs(warm + ids))
            first = set(stray_files(outputs, recorded))
            time.sleep(2)
            strays_while_full = sorted(first & set(stray_files(outputs, _recorded_files(p.jobs(warm + ids)))))
            active = {i for i, s in _statuses(p, ids).items() if s not in TERMINAL}
            freed_at = time.time()
            filler.unlink()
            jobs = p.wait(ids, timeout=120)
            records = p.sim_records()
            every = p.jobs(warm + ids + doomed)

        problems = check_against_simulator(every, records)
        for job in done_doomed:
            message = job.error_message or ""
            # The cause, and not the folder: a job's error is shown to keys that may not see where outputs are.
            if (job.status, job.error_code) != ("failed", "storage_error") or "No space left" not in message \
                    or str(root) in message:
                problems.append(f"deadline job {job.id}: {job.status} {job.error_code} {message}")
        for job in jobs:
            if job.status != "succeeded":
                problems.append(f"{job.id}: {job.status} {job.error_code} {job.error_message}")
        for job in every:
            for out in job.outputs:
                data = file_path(out.storage_uri).read_bytes()
                if (len(data), sha256_of(data)) != (out.size, out.sha256):
                    problems.append(f"{job.id}: file holds {len(data)} bytes, job records {out.size}")
        strays = stray_files(outputs, _recorded_files(every))
        fig = recovery(jobs, active, freed_at)
        print(f"\ndisk full on {how}: while full {dict(while_full)}, deadline jobs "
              f"{dict(Counter(f'{j.status}/{j.error_code}' for j in done_doomed))}, "
              f"files left behind while full {len(strays_while_full)}, at the end {len(strays)}")
        print(f"recovery after space was freed (jobs waiting then): {describe(fig)}")
        assert while_full.get("storing", 0) > 0, "the disk never filled: nothing was tested"
        assert strays_while_full == [] and strays == [], (strays_while_full, strays)
        assert problems == [], problems


def _recorded_files(jobs: list[Job]) -> set[Path]:
    return {file_path(o.storage_uri) for j in jobs for o in j.outputs}
