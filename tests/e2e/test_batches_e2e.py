"""Batches end to end on PostgreSQL: `genqueue api`, `genqueue worker` and `genqueue beat` as processes,
the simulator on loopback. An NDJSON batch over HTTP runs to completion, its results file lists every
line in input order with the stored outputs' sha256, the sweep records it finished; `genqueue submit
--file --partial` submits a file with a bad line as a batch and exits non-zero."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import FAKE_API_KEY, VERSION, LiveStack, describe, job_input, live_stack, run_cli


def _wait_batch(live: LiveStack, client: httpx.Client, batch_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    batch: dict[str, Any] = {}
    while time.monotonic() < deadline:
        batch = client.get(f"/v1/batches/{batch_id}").json()
        if batch["finished_at"]:
            return batch
        time.sleep(0.5)
    raise AssertionError(f"batch not finished: {batch}\n{live.logs()}")


@pytest.mark.timeout(600)
def test_ndjson_batch_runs_and_its_results_carry_the_outputs(tmp_path: Path, pg_url: str, redis_url: str) -> None:
    with live_stack(tmp_path, pg_url, redis_url, concurrency=4, beat=True) as live, live.client() as client:
        tag = uuid.uuid4().hex[:8]
        rows = [{"version": VERSION, "input": job_input(f"batch {tag} {i}"), "metadata": {"i": str(i)}}
                for i in range(8)]
        lines = [json.dumps(r) for r in rows]
        lines.insert(3, json.dumps({"version": VERSION, "input": job_input("", steps=0)}))
        resp = client.post(f"/v1/batches?metadata.run={tag}&callback_url=https://hooks.example.com/done",
                           content="\n".join(lines) + "\n", headers={"Content-Type": "application/x-ndjson"})
        assert resp.status_code == 202, resp.text
        created = resp.json()
        assert FAKE_API_KEY not in resp.text
        assert created["counts"]["total"] == 8 and created["counts"]["rejected"] == 1
        assert {(e["line"], e["field"]) for e in created["errors"]} == {(4, "input.prompt"), (4, "input.steps")}

        done = _wait_batch(live, client, created["id"])
        assert done["status"] == "completed" and done["progress"] == 1 and done["counts"]["succeeded"] == 8, done

        results = client.get(f"/v1/batches/{created['id']}/results")
        assert results.status_code == 200
        parsed = [json.loads(line) for line in results.text.splitlines()]
        assert [p["line"] for p in parsed] == list(range(1, 10))
        assert parsed[3]["status"] == "rejected" and parsed[3]["id"] is None
        for p in parsed[:3] + parsed[4:]:
            assert p["status"] == "succeeded" and p["error"] is None, p
            assert p["metadata"]["run"] == tag
            out = p["outputs"][0]
            data = client.get(out["url"]).content
            assert hashlib.sha256(data).hexdigest() == out["sha256"] and len(data) == out["size"]
        # Input order: line n holds the job made from line n.
        job = client.get(f"/v1/jobs/{parsed[5]['id']}").json()
        assert job["input"]["prompt"] == f"batch {tag} 4" and job["metadata"] == {"i": "4", "run": tag}
        tagged = client.get(f"/v1/stats?window=all&metadata.run={tag}").json()
        assert tagged["status_counts"]["succeeded"] == 8

        # The CLI: a file with one bad line, --partial: the others run as one batch, exit code 1.
        f = tmp_path / "jobs.jsonl"
        f.write_text("\n".join(json.dumps({"version": VERSION, "input": job_input(f"cli {tag} {i}")})
                               for i in range(3)) + "\n{broken\n")
        proc = run_cli("submit", "--file", str(f), "--partial", "--timeout", "120", "-m", f"run=cli-{tag}",
                       env=live.env, cwd=tmp_path, timeout=150)
        assert proc.returncode == 1, describe(proc)
        assert f"{f}:4: line: is not valid JSON" in proc.stderr, describe(proc)
        out_lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
        assert out_lines[-1] == "statuses: succeeded=3", describe(proc)
        cli_batch = client.get(f"/v1/batches/{out_lines[0]}").json()
        assert cli_batch["counts"]["succeeded"] == 3 and cli_batch["counts"]["rejected"] == 1, cli_batch
        listed = client.get("/v1/batches").json()["batches"]
        assert [b["id"] for b in listed[:2]] == [out_lines[0], created["id"]]
