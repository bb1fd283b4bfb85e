"""The dashboard in headless Chromium against a daemon that fast-forwarded the twin: every
card shows data, values match the API, the range picker and CSV downloads work, and
screenshots at 1600x1000 and phone width are saved (DCPUE_SCREENSHOTS, default tmp)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


def shots_dir(tmp_path: Path) -> Path:
    out = Path(os.environ.get("DCPUE_SCREENSHOTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    return out


def open_dashboard(browser, daemon, width: int, height: int):
    page = browser.new_page(viewport={"width": width, "height": height}, accept_downloads=True)
    page.goto(f"{daemon.url}/#access_token={daemon.token}")
    page.wait_for_selector("body[data-loaded='true']", timeout=60_000)
    page.wait_for_function("document.getElementById('status').textContent.startsWith('updated')",
                           timeout=60_000)
    return page


def test_every_card_has_data_and_matches_the_api(browser, daemon, tmp_path):
    api = daemon.get("/api/pue").json()
    page = open_dashboard(browser, daemon, 1600, 1000)
    try:
        assert "access_token" not in page.url  # the token left the address bar
        assert page.text_content("#pue-current") == f"{api['current']['value']:.3f}"
        assert page.is_hidden("#warming")
        assert "EDT" in page.text_content("#clock")  # site-local time, America/New_York
        assert len(page.get_attribute("#pue-line", "points").split()) >= 24
        assert page.locator("#pue-trend .axes text.unit").first.text_content() == "PUE (kWh/kWh)"
        assert page.locator("#daily-pue rect.bar.s0:not(.key)").count() >= 3  # 4 days of data
        assert page.locator("#monthly-pue rect.bar.s0:not(.key)").count() == 1  # July 2023
        assert page.locator("#pue-weather circle.dot").count() >= 20  # hourly, last 24 h
        assert page.locator("#energy-chart rect.bar:not(.key)").count() >= 24 * 4
        energy = page.text_content("#energy-split")
        assert "IT" in energy and "Cooling" in energy and "kWh" in energy
        assert "Grid import" in page.text_content("#pv-battery")
        assert "Scope 2, location-based" in page.text_content("#carbon")
        assert "no stale meter" in page.text_content("#quality-summary")
        assert page.locator("#quality tr").count() == 16
        alert = page.locator("#alerts li[data-alert='PueAboveOne']")
        assert alert.count() == 1 and "since" in alert.text_content()
        proposal = daemon.get("/api/proposals", limit=1).json()["proposals"][0]
        assert proposal["text"] in page.text_content("#proposal")
        page.screenshot(path=str(shots_dir(tmp_path) / "dashboard-1600x1000.png"), full_page=True)
        with page.expect_download() as info:
            page.click("button.csv[data-chart='daily']")
        rows = list(csv.reader(io.StringIO(Path(info.value.path()).read_text())))
        assert rows[0] == ["start_local", "pue", "previous_start_local", "previous_pue"]
        daily = daemon.get("/api/balance", step="day", **{"from": "2023-07-02",
                                                          "to": "2023-07-03"}).json()
        shown = {r[0][:11]: r[1] for r in rows[1:]}
        assert float(shown["2 Jul 2023,"]) == pytest.approx(daily["buckets"][0]["pue"])
        page.click("#range button[data-range='7d']")
        page.wait_for_function("document.getElementById('energy-label').textContent.includes('day')",
                               timeout=60_000)
        assert page.locator("#energy-chart rect.bar:not(.key)").count() < 24 * 4  # days, not hours
    finally:
        page.close()


def test_phone_width(browser, daemon, tmp_path):
    page = open_dashboard(browser, daemon, 390, 844)
    try:
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, width  # nothing wider than the screen
        page.screenshot(path=str(shots_dir(tmp_path) / "dashboard-phone.png"), full_page=True)
    finally:
        page.close()
