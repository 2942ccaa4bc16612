"""The demo in a real browser: Debian's headless Chromium, driven by Playwright, plays the whole story."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.demo import DemoOptions, Simulator

try:
    from playwright.async_api import Page, async_playwright, expect
except ImportError:  # pragma: no cover - depends on the machine
    pytest.skip("Playwright for Python is not installed (pip install -e '.[test]')", allow_module_level=True)

# Debian's package, never Playwright's own download (`playwright install` cannot reach its CDN here).
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
    pytest.skip(
        f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set CHROMIUM=/path/to/chromium)",
        allow_module_level=True,
    )

ARGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = os.environ.get("DEMO_SCREENSHOT")  # e.g. /tmp/demo.png, to look at what the browser rendered


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(DemoOptions(port=0, step_seconds=0.05, log_level="WARNING")) as simulator:
        yield simulator


@pytest.fixture
async def page(sim: Simulator) -> AsyncIterator[Page]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1400, "height": 900})
            tab = await context.new_page()
            tab.set_default_timeout(10_000)
            await tab.goto(f"{sim.url}/?user=U0ALICE&channel=C0DEPLOY")
            yield tab
        finally:
            await browser.close()


async def send(page: Page, text: str) -> None:
    await page.locator("#text").fill(text)
    await page.locator("#text").press("Enter")


async def test_launch_from_the_modal_and_approve_as_someone_else(page: Page, sim: Simulator) -> None:
    # The modal, rendered from the bot's own views.open and views.update.
    await send(page, "/bkjob run 100")
    modal = page.locator(".modal")
    await expect(modal.locator("header")).to_have_text("Deploy web")
    await expect(modal.get_by_label(re.compile(r"^version"))).to_have_value("2.4.1")

    # A bad host list: the bot's `response_action: errors` shows under the field, what was typed stays.
    await modal.get_by_label(re.compile(r"^servers")).fill("10.0.0.11\nnot-a-host")
    await modal.get_by_label(re.compile(r"^version")).fill("2.5.0")
    await page.locator("#modal-submit").click()
    await expect(modal.locator(".error")).to_contain_text("not-a-host")
    await expect(modal.get_by_label(re.compile(r"^version"))).to_have_value("2.5.0")

    await modal.get_by_label(re.compile(r"^servers")).fill("10.0.0.11")
    await page.locator("#modal-submit").click()
    await expect(page.locator("#backdrop")).to_be_hidden()

    # The launch message, edited in place to its final status, and the result in its thread.
    launch = page.locator("#timeline > .msg.message").first
    await expect(launch).to_contain_text("Deploy web")
    await expect(launch).to_contain_text("2.5.0")
    await expect(launch.locator(".thread")).to_contain_text("Succeeded")
    await expect(launch.locator(".meta")).to_have_text("(edited)")
    await expect(page.locator("#log")).to_contain_text("execute_job")
    await expect(page.locator("#log")).to_contain_text("chat.postMessage")

    # The approval channel: Alice asks, Bob approves from the same page.
    await page.get_by_role("button", name="#prod-ops").click()
    await send(page, "/bkjob run 101 --yes")
    request = page.locator("#timeline > .msg.message").filter(has_text="Approval needed")
    await expect(request.get_by_role("button", name="Approve")).to_be_visible()
    await page.locator("#user").select_option("U0BOB")
    await expect(page.locator("#user")).to_have_value("U0BOB")
    await request.get_by_role("button", name="Approve").click()
    await expect(page.locator("#timeline .thread").filter(has_text="Succeeded").first).to_be_visible()
    await expect(page.locator("#timeline")).to_contain_text("Approved by")

    if SCREENSHOT:
        await page.get_by_role("button", name="#deploys").click()
        await expect(page.locator("#timeline")).to_contain_text("Deploy web")
        await page.screenshot(path=SCREENSHOT, full_page=True)
