"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

The app is served by uvicorn on loopback in a thread with seeded jobs. GENQUEUE_SCREENSHOT=1 saves
docs/dashboard.png. A missing Chromium is a failure, not a skip: CI installs it (.ci/ script).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import uvicorn
from ops_app import Ops, build
from ops_helpers import EXPECTED_COUNTS
from sqlalchemy import update

from genqueue.core.events import publish
from genqueue.models.keys import update_limits
from genqueue.models.tables import Job
from genqueue.simulator.png import make_png

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"


@pytest.fixture
def served(sqlite_url: str, redis_url: str, tmp_path: Path) -> Iterator[tuple[Ops, str]]:
    ops = build(sqlite_url, redis_url, tmp_path, png=make_png("dashboard-test", 256, 160))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(ops.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield ops, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_dashboard_in_chromium(served: tuple[Ops, str]) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium) "
                    "to run the dashboard browser test")
    from playwright.sync_api import expect, sync_playwright

    ops, base = served
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1100})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            with ops.sessions.begin() as s:  # one key held at its spend cap (limit 0), one well under it
                update_limits(s, ops.key_ids["alice"], spend_limit=0.0, spend_period="day")
                update_limits(s, ops.key_ids["ops"], spend_limit=1000.0, spend_period="month")
            page.goto(f"{base}/dashboard")
            expect(page.locator("#login")).to_be_visible()
            page.fill("#key-input", ops.keys["alice"])  # a submit key is refused with a message
            page.click("#key-submit")
            expect(page.locator("#login-error")).to_contain_text("not an ops or admin key")
            page.fill("#key-input", ops.keys["ops"])
            page.click("#key-submit")
            expect(page.locator("#main")).to_be_visible()
            for status, n in EXPECTED_COUNTS.items():
                expect(page.locator(f"[data-tile={status}] .value")).to_have_text(str(n))
            expect(page.locator("[data-tile=queue_depth] .value")).to_have_text("2")
            # The scheduling panel: the two queued jobs by priority, and the dispatch rate against the budget.
            expect(page.locator("#sched")).to_contain_text("priority 5")
            expect(page.locator("#dispatch")).to_contain_text("/min create budget")
            expect(page.locator("[data-tile=stuck] .value")).to_have_text("1")
            # charts drawn: bars in the throughput chart, p50 lines in the latency chart
            assert page.locator("#chart-throughput svg rect").count() >= 5
            assert page.locator("#chart-latency svg path.line").count() >= 3
            expect(page.locator("#failures")).to_contain_text("prediction_failed")
            # cost panel: by model at its price, by day (bars), spend caps (held / ok) and the retention line
            expect(page.locator("#cost-models")).to_contain_text("/s")
            assert page.locator("#chart-cost-day svg rect").count() >= 1
            expect(page.locator("#cost-days tbody tr")).not_to_have_count(0)
            expect(page.locator("#spend-caps tr[data-cap-key=alice]")).to_contain_text("held")
            expect(page.locator("#spend-caps tr[data-cap-key=ops]")).to_contain_text("per month")
            expect(page.locator("#retention-line")).to_contain_text("overdue")
            expect(page.locator("#jobs-table tbody tr[data-job-id]")).to_have_count(15)
            # status filter changes the jobs table
            page.select_option("#filter-status", "failed")
            expect(page.locator("#jobs-table tbody tr[data-job-id]")).to_have_count(3)
            statuses = page.locator("#jobs-table tbody tr[data-job-id]").evaluate_all(
                "rows => rows.map(r => r.dataset.status)")
            assert statuses == ["failed"] * 3
            page.locator("#jobs-table tbody tr[data-job-id]").first.click()
            expect(page.locator("#job-detail")).to_be_visible()
            expect(page.locator("#detail-error")).to_contain_text("prediction_")
            # the succeeded job with a stored output: timeline + image preview through the bearer header
            page.select_option("#filter-status", "succeeded")
            expect(page.locator("#jobs-table tbody tr[data-job-id]")).to_have_count(5)
            with_output = ops.seeded.ids["succeeded"][-1]
            page.locator(f"#jobs-table tr[data-job-id='{with_output}']").click()
            expect(page.locator("#detail-id")).to_have_text(with_output)
            assert page.locator("#job-timeline svg rect").count() >= 4
            img = page.locator("#detail-outputs img")
            expect(img).to_be_visible()
            assert img.evaluate("i => i.complete && i.naturalWidth") == 256
            assert img.get_attribute("src", timeout=1000).startswith("blob:")
            page.wait_for_timeout(5600)  # one auto-refresh cycle keeps everything in place
            expect(page.locator("[data-tile=succeeded] .value")).to_have_text("5")
            expect(page.locator("#updated")).to_contain_text("updated")
            assert not errors, errors
            if os.environ.get("GENQUEUE_SCREENSHOT") == "1":
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOT), full_page=True)
            # live: a job event (a worker's write, then its event) updates the tiles with no polling
            queued = ops.seeded.ids["queued"][0]
            with ops.sessions.begin() as s:
                s.execute(update(Job).where(Job.id == queued).values(status="failed", error_code="prediction_failed"))
            client = redis.Redis.from_url(ops.settings.redis_url)
            try:
                publish(client, queued, "failed")
            finally:
                client.close()
            expect(page.locator("[data-tile=failed] .value")).to_have_text(str(EXPECTED_COUNTS["failed"] + 1),
                                                                           timeout=5000)
            expect(page.locator("#updated")).to_contain_text("live")
            assert not errors, errors
        finally:
            browser.close()
