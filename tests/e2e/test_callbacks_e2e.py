"""Callbacks end to end with real processes: `genqueue api`, a worker and the beat on PostgreSQL, the
simulator, and a receiver on loopback that answers every callback 500 five times, then drops the
connection twice, then 200. Jobs are submitted over HTTP; meanwhile the worker is SIGKILLed and the API
restarted. Every job's callback is accepted once per event (retries carry one `webhook-id` and one
body), each signature verified with the `standardwebhooks` package, and the attempts are listed by
`GET /v1/jobs/{id}/callbacks`."""

from __future__ import annotations

import json
import signal
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook

from genqueue.bootstrap import Root
from genqueue.models.keys import Role, create_key, new_callback_secret
from genqueue.models.tables import CallbackDelivery
from genqueue.simulator.config import SimConfig
from genqueue.simulator.server import run_in_thread
from tests.support.callback_receiver import CallbackReceiver
from tests.support.pipeline import FAKE_API_KEY, VERSION, pipeline
from tests.support.seaweed import free_ports

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

ENV = {"GENQUEUE_CALLBACK_ALLOW_PRIVATE": "true", "GENQUEUE_CALLBACK_RETRY_FIRST": "0.3",
       "GENQUEUE_CALLBACK_RETRY_MAX": "1.5"}


def _submit(api: str, key: str, url: str, n: int, running: bool) -> list[str]:
    ids = []
    for i in range(n):
        body = {"version": VERSION, "input": {"prompt": f"cb {i}", "api_key": FAKE_API_KEY}, "callback_url": url}
        if running:
            body["callback_events"] = ["running", "terminal"]
        resp = httpx.post(f"{api}/v1/jobs", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert resp.status_code == 202, resp.text
        ids.append(resp.json()["id"])
    return ids


def test_callbacks_survive_worker_sigkill_and_api_restart(tmp_path: Path, pg_url: str, redis_url: str) -> None:
    (port,) = free_ports(1)
    api = f"http://127.0.0.1:{port}"
    sim = run_in_thread(SimConfig(start_delay=0.1, predict_seconds=1.0, jitter=0.3))
    receiver = CallbackReceiver(fail=5, drop=2)
    try:
        with pipeline(tmp_path, pg_url, redis_url, sim.base_url, concurrency=2, beat=True, api_port=port,
                      env_extra=ENV) as p:
            with p.sessions.begin() as s:
                key, plaintext = create_key(s, "svc", Role.SUBMIT)
                secret, key.callback_secret_sealed = new_callback_secret(Root(p.settings).cipher)
            ids = _submit(api, plaintext, receiver.url(), 4, running=False)
            ids += _submit(api, plaintext, receiver.url(), 4, running=True)
            deadline = time.monotonic() + 60
            while len(receiver.requests()) < 6 and time.monotonic() < deadline:
                time.sleep(0.1)
            worker, api_child = p.stack.children["worker"], p.stack.children["api"]
            worker.signal(signal.SIGKILL)  # mid-retries: its delayed callback messages die with it
            api_child.signal(signal.SIGTERM)
            assert api_child.proc is not None
            api_child.proc.wait(20)
            time.sleep(1.0)
            p.stack.restart_dead()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{api}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            ids += _submit(api, plaintext, receiver.url(), 2, running=False)  # through the restarted API
            p.wait(ids, timeout=150)
            expected = len(ids) + 4  # one terminal callback per job, one running callback for 4 of them
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline:
                with p.sessions() as s:
                    delivered = s.scalar(select(func.count()).select_from(CallbackDelivery)
                                         .where(CallbackDelivery.state == "delivered"))
                if delivered == expected:
                    break
                time.sleep(0.5)
            with p.sessions() as s:
                rows = s.scalars(select(CallbackDelivery)).all()
            states = sorted((d.job_id, d.event, d.state, d.attempts) for d in rows)
            assert delivered == expected, (states, f"logs in {p.stack.log_dir}")
            listing = httpx.get(f"{api}/v1/jobs/{ids[0]}/callbacks", headers={"Authorization": f"Bearer {plaintext}"},
                                timeout=30).json()["callbacks"]
    finally:
        receiver.close()
        sim.stop()

    accepted: dict[tuple[str, str], set[str]] = defaultdict(set)
    bodies: dict[str, set[bytes]] = defaultdict(set)
    for seen in receiver.requests():
        bodies[seen.headers["webhook-id"]].add(seen.body)
        payload = Webhook(secret).verify(seen.body, seen.headers)  # every attempt is signed right
        if seen.answer == "200":
            accepted[(payload["id"], seen.headers["genqueue-event"])].add(seen.headers["webhook-id"])
    assert all(len(b) == 1 for b in bodies.values())  # retries carry the same bytes
    wanted = {(j, "terminal") for j in ids} | {(j, "running") for j in ids[4:8]}
    assert set(accepted) == wanted
    assert all(len(msg_ids) == 1 for msg_ids in accepted.values())  # one job JSON per job and event
    for (job_id, event), (msg_id,) in accepted.items():
        [body] = bodies[msg_id]
        doc = json.loads(body)
        assert doc["id"] == job_id and doc["input"]["api_key"] == "***"
        if event == "terminal":
            assert doc["status"] == "succeeded" and doc["outputs"], doc
    [shown] = listing
    codes = [a["status_code"] for a in shown["attempt_log"]]
    assert shown["state"] == "delivered" and codes[-1] == 200 and codes.count(500) == 5, shown
    assert all(a["latency_ms"] >= 0 for a in shown["attempt_log"])
    print(f"\ncallbacks: {len(receiver.requests())} requests, {expected} deliveries, attempts per delivery "
          f"{sorted(d[3] for d in states)}")
