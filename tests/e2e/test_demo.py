"""`genqueue demo` end to end: the embedded default (SQLite file + local folder in the data dir),
the simulator, worker and beat as processes, 20 jobs, the summary table."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_support import PNG_SIGNATURE, clean_env

TIMINGS = ("queue_time", "start_time", "predict_time", "total_time", "detection_lag", "storage_time",
           "end_to_end_time")
NUMBER = r"\d+\.\d{3}"


@pytest.mark.timeout(240)
def test_demo_runs_twenty_jobs_on_the_embedded_default(tmp_path: Path, redis_url: str) -> None:
    data_dir = tmp_path / "gq"
    env = clean_env(GENQUEUE_DATA_DIR=str(data_dir), REDIS_URL=redis_url, COLUMNS="200")
    try:
        proc = subprocess.run([sys.executable, "-m", "cli", "demo"], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=180, check=False)
    except subprocess.TimeoutExpired as exc:
        logs = "\n".join(p.read_text(errors="replace")[-4000:] for p in (data_dir / "logs").glob("*.log"))
        raise AssertionError(f"demo did not finish in 180 s\nstdout:\n{exc.stdout!r}\nlogs:\n{logs}") from None
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
    # No child process is left behind: the demo stops what it started.
    assert "sk_demo_fake_not_a_real_key" not in logs
