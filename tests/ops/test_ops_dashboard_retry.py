"""The dashboard's failures table: a retry button per error code, in a real headless Chromium (like
test_ops_dashboard.py): a dry-run count in the confirmation, then one bulk retry of that group only."""

from __future__ import annotations

import os

import pytest
from ops_app import Ops
from sqlalchemy import select
from test_ops_dashboard import ARGS, CHROMIUM, served

from genqueue.models.tables import Job

__all__ = ["served"]  # the fixture, imported to be used here


def test_retry_a_failures_group_from_the_dashboard(served: tuple[Ops, str]) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium to run the dashboard browser test")
    from playwright.sync_api import expect, sync_playwright

    ops, base = served
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1100})
            errors: list[str] = []
            dialogs: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            def accept(dialog: object) -> None:
                dialogs.append(dialog.message)  # type: ignore[attr-defined]
                dialog.accept()  # type: ignore[attr-defined]

            page.on("dialog", accept)
            page.goto(f"{base}/dashboard")
            page.fill("#key-input", ops.keys["ops"])
            page.click("#key-submit")
            expect(page.locator("#main")).to_be_visible()
            # An ops key may look, not re-run billed work: the button says what it needs.
            page.locator("#failures button[data-code=prediction_failed]").click()
            expect(page.locator("#failures-note")).to_contain_text("needs an admin key")
            page.evaluate("sessionStorage.clear()")
            page.reload()
            page.fill("#key-input", ops.keys["admin"])
            page.click("#key-submit")
            expect(page.locator("#failures tr[data-code=prediction_aborted]")).to_be_visible()
            page.locator("#failures button[data-code=prediction_failed]").click()
            expect(page.locator("#failures-note")).to_contain_text("Retry of 2 prediction_failed jobs started")
            assert dialogs == ["Retry 2 failed jobs with error prediction_failed?"]
            with ops.sessions() as s:
                statuses = dict(s.execute(select(Job.error_code, Job.status).where(
                    Job.id.in_(ops.seeded.ids["failed"] + ops.seeded.ids["aborted"]))).all())
                queued = s.scalars(select(Job.id).where(Job.attempt == 2)).all()
            assert sorted(queued) == sorted(ops.seeded.ids["failed"])  # only that group, now queued again
            assert statuses.get("prediction_aborted") == "failed"
            assert not errors, errors
        finally:
            browser.close()
