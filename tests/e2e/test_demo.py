"""`genqueue demo` end to end: the embedded default (SQLite file + local folder in the data dir),
the simulator, worker and beat as processes, 20 jobs, the summary table."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_support import PNG_SIGNATURE, clean_env

TIMINGS = ("queue_time", "start_time", "predict_time", "total_time", "detection_lag", "storage_time",
           "end_to_end_time")
NUMBER = r"\d+\.\d{3}"


def _children(pid: int) -> list[int]:
    """Direct children of pid (the demo's simulator, worker and beat, each in its own session)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _run_demo(env: dict[str, str], cwd: Path, data_dir: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """`python -m genqueue demo`; on timeout it gets Ctrl-C (its Stack stops the children), then its
    children and itself are killed by pid, so nothing outlives the test."""
    demo = subprocess.Popen([sys.executable, "-m", "genqueue", "demo"], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = demo.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        children = _children(demo.pid)
        demo.send_signal(signal.SIGINT)
        try:
            out, err = demo.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child, signal.SIGKILL)
            demo.kill()
            out, err = demo.communicate(timeout=10)
        logs = "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-4000:]}"
                         for p in sorted((data_dir / "logs").glob("*.log")))
        raise AssertionError(f"demo did not finish in {timeout} s\n{out}\n{err}\n{logs}") from None
    return subprocess.CompletedProcess(demo.args, demo.returncode, out, err)


@pytest.mark.timeout(240)
def test_demo_runs_twenty_jobs_on_the_embedded_default(tmp_path: Path, redis_url: str) -> None:
    data_dir = tmp_path / "gq"
    env = clean_env(GENQUEUE_DATA_DIR=str(data_dir), REDIS_URL=redis_url, COLUMNS="200")
    proc = _run_demo(env, tmp_path, data_dir, timeout=180)
    out = proc.stdout + proc.stderr
    logs = "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-4000:]}"
                     for p in sorted((data_dir / "logs").glob("*.log")))
    context = f"exit={proc.returncode}\n--- output ---\n{out}\n--- logs ---\n{logs}"

    assert proc.returncode == 0, context
    assert "Traceback" not in out, context
    assert "succeeded=20" in out, context
    assert re.search(r"statuses: succeeded=20\s*$", out, re.M), context

    # The summary table: a header with p50/p95 and one row per timing with numbers for all 20 jobs.
    assert re.search(r"phase.*\bn\b.*p50.*p95", out), context
    for name in ("queue_time", "predict_time", "total_time", "end_to_end_time"):
        row = re.search(rf"{name}\W+20\W+({NUMBER})\W+({NUMBER})", out)
        assert row, f"no p50/p95 row for {name}\n{context}"
        p50, p95 = float(row.group(1)), float(row.group(2))
        assert 0 <= p50 <= p95, row.group(0)
    for name in TIMINGS:
        assert name in out, f"timing {name} missing from the summary\n{context}"

    # The embedded default: SQLite file and the outputs folder in the data dir, 20 PNGs.
    assert (data_dir / "genqueue.db").is_file(), context
    pngs = sorted((data_dir / "outputs" / "jobs").glob("*/0.png"))
    assert len(pngs) == 20, f"{[str(p) for p in pngs]}\n{context}"
    for png in pngs:
        head = png.read_bytes()[:8]
        assert head == PNG_SIGNATURE, f"{png} starts with {head!r}"
        assert png.stat().st_size > 100, png
    # The demo job secret stays out of the component logs.
    assert "sk_demo_fake_not_a_real_key" not in logs
