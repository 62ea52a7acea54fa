"""The `genqueue` CLI as an operator meets it: wrong flags, files and settings give one clear line
(`genqueue: error: ...`, exit 2) and never a traceback; `submit --wait` works against a live worker."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from e2e_support import FAKE_API_KEY, VERSION, clean_env, describe, job_input, live_stack, run_cli


@pytest.fixture
def cli_env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    return clean_env(GENQUEUE_DATA_DIR=str(tmp_path / "data"), DATABASE_URL=f"sqlite:///{tmp_path}/gq.db",
                     REDIS_URL=redis_url)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str, code: int = 2) -> str:
    """Non-zero exit, exactly one stderr line `genqueue: error: ...` containing every needle."""
    context = describe(proc)
    assert proc.returncode == code, context
    assert "Traceback" not in proc.stdout + proc.stderr, context
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, context
    line = lines[0]
    assert line.startswith("genqueue: error: "), context
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def _jsonl(path: Path, rows: list[object | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


GOOD = {"version": VERSION, "input": job_input("a good line")}


# --- submit: bad arguments --------------------------------------------------------------------------

def test_submit_bad_version(tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc = run_cli("submit", "--version", "not-a-version", "-i", "prompt=x", env=cli_env, cwd=tmp_path)
    assert_one_line_error(proc, "version")
    assert proc.stdout == ""


def test_submit_bad_input_pair(tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc = run_cli("submit", "--version", VERSION, "-i", "no-equals-sign", env=cli_env, cwd=tmp_path)
    assert_one_line_error(proc, "key=value")


def test_submit_invalid_model_input_names_the_field(tmp_path: Path, cli_env: dict[str, str]) -> None:
    assert run_cli("migrate", env=cli_env, cwd=tmp_path).returncode == 0
    proc = run_cli("submit", "--version", VERSION, "-i", "prompt=x", "-i", "api_key=k", "-i", "steps=500",
                   env=cli_env, cwd=tmp_path)
    assert_one_line_error(proc, "input.steps")


def test_submit_file_and_flags_together(tmp_path: Path, cli_env: dict[str, str]) -> None:
    f = _jsonl(tmp_path / "jobs.jsonl", [GOOD])
    proc = run_cli("submit", "--file", str(f), "--version", VERSION, env=cli_env, cwd=tmp_path)
    assert_one_line_error(proc, "--file")


def test_submit_missing_file(tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc = run_cli("submit", "--file", "missing.jsonl", env=cli_env, cwd=tmp_path)
    assert_one_line_error(proc, "no such file", "missing.jsonl")


def test_submit_empty_file(tmp_path: Path, cli_env: dict[str, str]) -> None:
    f = tmp_path / "empty.jsonl"
    f.write_text("\n\n")
    proc = run_cli("submit", "--file", str(f), env=cli_env, cwd=tmp_path)
    assert_one_line_error(proc, "empty.jsonl", "no jobs")


def assert_bad_lines(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A file with bad lines: one `genqueue: error: file:line: ...` line per bad line (each needle in its
    own line, in order), then one line saying nothing was submitted; exit 2, no traceback."""
    context = describe(proc)
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr, context
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == len(needles) + 1 and all(ln.startswith("genqueue: error: ") for ln in lines), context
    for line, needle in zip(lines, needles, strict=False):
        assert needle in line, context
    assert "nothing was submitted" in lines[-1], context


def test_submit_file_with_a_line_that_is_not_json(tmp_path: Path, cli_env: dict[str, str]) -> None:
    f = _jsonl(tmp_path / "bad.jsonl", [GOOD, GOOD, "{not json", GOOD])
    proc = run_cli("submit", "--file", str(f), env=cli_env, cwd=tmp_path)
    assert_bad_lines(proc, "bad.jsonl:3")


def test_submit_file_with_a_line_that_is_not_an_object(tmp_path: Path, cli_env: dict[str, str]) -> None:
    f = _jsonl(tmp_path / "bad.jsonl", [GOOD, [1, 2], "[]"])
    proc = run_cli("submit", "--file", str(f), env=cli_env, cwd=tmp_path)
    assert_bad_lines(proc, "bad.jsonl:2: line: must be a JSON object", "bad.jsonl:3")


@pytest.mark.parametrize("bad_line", [
    {"version": "not-a-version", "input": job_input("x")},  # the target is malformed
    {"version": VERSION, "inptu": job_input("x")},  # a misspelled key: no input
    {"version": VERSION, "input": job_input("x", steps=500)},  # the model's input schema refuses it
], ids=["bad-version", "no-input", "bad-steps"])
def test_submit_file_with_an_invalid_request_names_the_line(tmp_path: Path, cli_env: dict[str, str],
                                                            bad_line: dict[str, object]) -> None:
    """A line that is JSON but not a valid job request: the one-line error must say which line."""
    assert run_cli("migrate", env=cli_env, cwd=tmp_path).returncode == 0
    # A blank line first, so that a 0-based job index (jobs.2) and the line number (4) differ.
    f = _jsonl(tmp_path / "bad.jsonl", ["", GOOD, GOOD, bad_line, GOOD])
    proc = run_cli("submit", "--file", str(f), env=cli_env, cwd=tmp_path)
    assert_bad_lines(proc, "bad.jsonl:4")


# --- settings --------------------------------------------------------------------------------------

def test_bad_database_url(tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc = run_cli("migrate", env={**cli_env, "DATABASE_URL": "mysql://x"}, cwd=tmp_path)
    assert_one_line_error(proc, "DATABASE_URL")


def test_bad_number_setting(tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc = run_cli("migrate", env={**cli_env, "GENQUEUE_JOB_DEADLINE": "abc"}, cwd=tmp_path)
    assert_one_line_error(proc, "GENQUEUE_JOB_DEADLINE")


def test_bad_replicate_base_url(tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc = run_cli("migrate", env={**cli_env, "REPLICATE_BASE_URL": "http://127.0.0.1:1/nope"}, cwd=tmp_path)
    assert_one_line_error(proc, "REPLICATE_BASE_URL", "/v1")


def test_worker_without_a_replicate_token(tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc = run_cli("worker", env=cli_env, cwd=tmp_path, timeout=30)
    assert_one_line_error(proc, "REPLICATE_API_TOKEN")


def test_worker_with_unknown_queues(tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc = run_cli("worker", "--queues", "everything", env={**cli_env, "REPLICATE_API_TOKEN": "r8_sim_fake_token"},
                   cwd=tmp_path, timeout=30)
    assert_one_line_error(proc, "--queues", "follow")


def test_bad_webhook_url(tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc = run_cli("migrate", env={**cli_env, "GENQUEUE_WEBHOOK_URL": "genqueue.example.com/hook?x=1"}, cwd=tmp_path)
    assert_one_line_error(proc, "GENQUEUE_WEBHOOK_URL")


# --- keys ------------------------------------------------------------------------------------------

def test_keys_create_with_an_unknown_role(tmp_path: Path, cli_env: dict[str, str]) -> None:
    assert run_cli("migrate", env=cli_env, cwd=tmp_path).returncode == 0
    proc = run_cli("keys", "create", "--name", "x", "--role", "god", env=cli_env, cwd=tmp_path)
    assert_one_line_error(proc, "--role", "god")
    listed = run_cli("keys", "list", env=cli_env, cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout.strip() == "", describe(listed)


def test_keys_create_list_revoke(tmp_path: Path, cli_env: dict[str, str]) -> None:
    assert run_cli("migrate", env=cli_env, cwd=tmp_path).returncode == 0
    created = run_cli("keys", "create", "--name", "ops-bot", "--role", "ops", env=cli_env, cwd=tmp_path)
    assert created.returncode == 0, describe(created)
    key = created.stdout.strip().splitlines()[-1]
    listed = run_cli("keys", "list", env=cli_env, cwd=tmp_path)
    assert "ops-bot" in listed.stdout and "active" in listed.stdout, describe(listed)
    assert key not in listed.stdout  # shown once, stored hashed
    key_id = listed.stdout.split()[0]
    revoked = run_cli("keys", "revoke", key_id, env=cli_env, cwd=tmp_path)
    assert revoked.returncode == 0, describe(revoked)
    assert "revoked" in run_cli("keys", "list", env=cli_env, cwd=tmp_path).stdout
    proc = run_cli("keys", "revoke", key_id, env=cli_env, cwd=tmp_path)
    assert_one_line_error(proc, key_id, code=1)


# --- submit against a live worker -------------------------------------------------------------------

@pytest.mark.timeout(600)
def test_submit_wait_against_a_live_worker(tmp_path: Path, sqlite_url: str, redis_url: str) -> None:
    with live_stack(tmp_path, sqlite_url, redis_url, concurrency=2) as live, live.client() as client:
        prompt = f"cli ocean {uuid.uuid4().hex}"
        proc = run_cli("submit", "--version", VERSION, "-i", f"prompt={prompt}", "-i", "aspect_ratio=16:9",
                       "-i", "output_format=png", "-i", "steps=4", "-i", f"api_key={FAKE_API_KEY}",
                       "--wait", "--timeout", "120", env=live.env, cwd=tmp_path, timeout=150)
        assert proc.returncode == 0, describe(proc) + live.logs()
        assert "Traceback" not in proc.stdout + proc.stderr, describe(proc)
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
        assert lines[-1] == "statuses: succeeded=1", describe(proc)
        assert len(lines) == 2, describe(proc)
        job_id = lines[0].strip()
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "succeeded" and job["input"]["prompt"] == prompt, job
        assert job["input"]["steps"] == 4, job  # -i values are JSON: a number stays a number
        assert job["input"]["api_key"] == "***", job
        rec = live.sim_record(job["prediction_id"])
        assert rec["files"][0]["sha256"] == job["outputs"][0]["sha256"], (rec, job)
        assert rec["duplicates"] == 1, rec

        # A JSONL file of three jobs: one batch (its id on stdout), waited on together.
        f = _jsonl(tmp_path / "three.jsonl", [{"version": VERSION, "input": job_input(f"file {i}")}
                                              for i in range(3)])
        proc = run_cli("submit", "--file", str(f), "--wait", "--timeout", "120", env=live.env, cwd=tmp_path,
                       timeout=150)
        assert proc.returncode == 0, describe(proc) + live.logs()
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]  # rich's progress may leave a blank line
        assert lines[-1] == "statuses: succeeded=3", describe(proc)
        assert len(lines) == 2, describe(proc)
        batch = client.get(f"/v1/batches/{lines[0]}").json()
        assert batch["counts"]["succeeded"] == 3 and batch["progress"] == 1, batch

        # --wait exits 1 when a job does not succeed: the simulator fails every prediction.
        live.set_sim(fail_rate=1.0)
        proc = run_cli("submit", "--version", VERSION, "-i", "prompt=doomed", "-i", f"api_key={FAKE_API_KEY}",
                       "--wait", "--timeout", "120", env=live.env, cwd=tmp_path, timeout=150)
        assert proc.returncode == 1, describe(proc)
        assert proc.stdout.strip().splitlines()[-1] == "statuses: failed=1", describe(proc)
        assert "Traceback" not in proc.stdout + proc.stderr, describe(proc)
        live.set_sim(fail_rate=0.0)
