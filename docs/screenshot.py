"""Re-make docs/dashboard.png from real demo data: run `genqueue demo` in a scratch data folder,
serve the API on it, log in with an ops key in headless Chromium and take a screenshot.

    .venv/bin/python docs/screenshot.py
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from genqueue.cli.stack import Stack, free_port, genqueue_argv, wait_http

ROOT = Path(__file__).resolve().parents[1]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]


def main() -> None:
    from playwright.sync_api import expect, sync_playwright

    data = Path(tempfile.mkdtemp(prefix="gq-shot-"))
    env = dict(os.environ, GENQUEUE_DATA_DIR=str(data), GENQUEUE_LOG_LEVEL="WARNING")
    subprocess.run(genqueue_argv("demo", "--jobs", "40"), env=env, check=True, cwd=data)
    key = subprocess.run(genqueue_argv("keys", "create", "--name", "screenshot", "--role", "ops"), env=env,
                         check=True, capture_output=True, text=True, cwd=data).stdout.strip().splitlines()[-1]
    port = free_port()
    with Stack(env, data / "logs") as stack:
        stack.add("api", "api", "--port", str(port))
        assert wait_http(f"http://127.0.0.1:{port}/healthz"), "api did not start"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1100})
            page.goto(f"http://127.0.0.1:{port}/dashboard")
            page.fill("#key-input", key)
            page.click("#key-submit")
            expect(page.locator("#main")).to_be_visible()
            time.sleep(1.5)
            first = page.locator("#jobs-table tbody tr[data-job-id]").first
            first.click()
            time.sleep(1.5)
            page.screenshot(path=str(ROOT / "docs" / "dashboard.png"), full_page=True)
            browser.close()
    print("wrote docs/dashboard.png")


if __name__ == "__main__":
    main()
