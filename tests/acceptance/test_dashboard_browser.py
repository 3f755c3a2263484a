"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright,
against a real `stepkeeper serve --http` process.

Open the runs page, filter to failed runs, open the failed run, see the failed step's error and
its attempt count, rerun from that step and watch the new run complete without a reload.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from engine import Engine, SqlStore
from tests.support.recorder import Recorder

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SKILL = """
def handler(ctx, step):
    order = step.run("fetch", lambda: {"id": ctx.event["data"]["order"]})
    step.run("notify", lambda: post(order))
    return "notified " + order["id"]

def post(order):
    status = http.post("BASE/notify", json=order).status_code
    if status >= 500:
        raise ValueError("the notifier answered " + str(status))
    return status
"""


def require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    reason = "Chromium is not installed (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser test (.ci/run installs it)")
    pytest.skip(reason)


async def test_find_a_failed_run_see_why_and_rerun_it_from_the_failed_step(
    dashboard: str, tmp_path: Path, recorder: Recorder
) -> None:
    require_chromium()
    from playwright.async_api import async_playwright

    offline = Engine(SqlStore(f"sqlite:///{tmp_path / 'stepkeeper.db'}"))  # stores; serve runs
    config = {"retries": 1, "retry_backoff": {"initial": "100ms", "jitter": 0}}
    code = SKILL.replace("BASE", recorder.base)
    await offline.create_skill("notify-order", code, triggers=[{"event": "order"}], config=config)
    recorder.scripts["/notify"] = [503, 503]  # both attempts of the first run fail
    [failed_id] = (await offline.send_event("order", {"order": "o-17"})).run_ids
    assert (await offline.wait_for_run(failed_id, timeout=30)).status == "failed"

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = await browser.new_page()
        await page.goto(f"{dashboard}/runs")
        await page.select_option("select[name=status]", "failed")
        await page.click("button[type=submit]")
        await page.wait_for_url("**/runs?*status=failed*")
        rows = page.locator("#runs tr td:first-child a")
        assert await rows.count() == 1
        await rows.first.click()
        await page.wait_for_url(f"**/runs/{failed_id}")

        notify = page.locator("tr.step[data-key=notify]")
        assert await notify.locator(".status").inner_text() == "failed"
        assert await notify.locator(".attempts").inner_text() == "2"
        await page.click("button[data-tab=step-notify-error]")
        error = await page.locator("#step-notify-error").inner_text()
        assert "the notifier answered 503" in error

        recorder.hold = 2.0  # the notifier works again, slowly: the new run is seen running
        await notify.locator("button.rerun-from").click()
        await page.wait_for_url(lambda url: "/runs/run_" in url and failed_id not in url)
        assert await page.locator("#run-status").inner_text() in ("queued", "running")
        navigations: list[str] = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url))
        await page.wait_for_selector("#run-status.completed", timeout=30_000)
        assert navigations == []  # it completed on the page, without a reload
        assert await page.locator("tr.step[data-key=fetch] .attempts").inner_text() == "1"
        await browser.close()

    new_id = page.url.rsplit("/", 1)[1]
    rerun = await offline.get_run(new_id)
    assert rerun.status == "completed" and rerun.rerun_of == failed_id
    assert recorder.count("/notify") == 3  # two failed attempts, then the rerun's one
    await offline.close()
