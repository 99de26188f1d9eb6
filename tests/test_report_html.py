"""The HTML report opened in a real headless browser (Debian's Chromium, driven by Playwright).

The page is drawn from a few of the committed glyphs/quick records (real runs, real per-query figures), so what is
checked is what a reviewer opens: it renders without a console error or a network request, the table holds one row
per run, every plot is present and decoded, a column sorts on a click and every loss has its cite block. A
full-page screenshot is kept as a test artefact ($HARNESS_ARTIFACTS, else build/artifacts/).

Without Chromium the test is skipped, unless HARNESS_REQUIRE_CHROMIUM=1 (CI sets it), where a missing browser fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from committed_runs import REPO, copy_committed_runs

from harness.publish import write_leaderboards

LOSSES = ("none", "circle", "batch_hard", "fastap")


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("HARNESS_REQUIRE_CHROMIUM") == "1":
            pytest.fail("HARNESS_REQUIRE_CHROMIUM=1 but no chromium on PATH (apt-get install chromium)")
        pytest.skip("no chromium on PATH (apt-get install chromium; CI sets HARNESS_REQUIRE_CHROMIUM=1)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("playwright is a dev dependency: make test installs it")
    return found


@pytest.fixture(scope="module")
def report_page(tmp_path_factory) -> Path:
    """The page of a table of four committed glyphs/quick runs, drawn afresh into a temporary folder."""
    root = tmp_path_factory.mktemp("report")
    write_leaderboards(copy_committed_runs(LOSSES, root / "results"), root / "reports")
    return root / "reports" / "glyphs__quick.html"


def _artifacts() -> Path:
    folder = Path(os.environ.get("HARNESS_ARTIFACTS") or REPO / "build" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.slow
def test_the_report_renders_in_headless_chromium(report_page):
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    problems, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

            def route(r):  # the page must not need the network: anything but the file itself is refused
                requests.append(r.request.url)
                r.continue_() if r.request.url.startswith(("file:", "data:")) else r.abort()

            page.route("**/*", route)
            page.goto(report_page.as_uri(), wait_until="load")

            assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
            assert page.locator("#leaderboard tbody tr").count() == len(LOSSES)
            assert page.locator("#leaderboard tbody.baseline tr").count() == 1
            assert page.locator("#leaderboard tbody.stale tr").count() == 0  # the committed runs are current
            images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
            assert len(images) >= 2 + len(LOSSES) - 1  # two table charts and one per trained loss
            assert [alt for alt, complete, width in images if not (complete and width > 0)] == []
            plots = set(page.eval_on_selector_all("figure[data-plot]", "fs => fs.map(f => f.dataset.plot)"))
            assert {"map_at_r", "validation_vs_test"} <= plots
            assert {f"loss:{loss}" for loss in LOSSES if loss != "none"} <= plots
            for loss in LOSSES:
                assert page.locator(f"#loss-{loss}").count() == 1

            def first_column():
                return page.eval_on_selector_all("#leaderboard tbody:not(.baseline):not(.stale) tr",
                                                 "rows => rows.map(r => r.cells[0].dataset.value)")

            trained = first_column()
            header = page.locator("#leaderboard thead th").first
            header.locator("button").click()
            assert header.get_attribute("aria-sort") == "ascending"
            assert first_column() == sorted(trained)
            header.locator("button").click()
            assert header.get_attribute("aria-sort") == "descending"
            assert first_column() == sorted(trained, reverse=True)

            cites = page.locator("details", has_text="Cite")
            assert cites.count() == len(LOSSES)
            cites.nth(1).locator("summary").click()
            block = cites.nth(1).locator("pre")
            assert block.is_visible() and "harness benchmark" in block.inner_text()
            assert "@" in block.inner_text()  # a BibTeX entry

            page.screenshot(path=str(_artifacts() / "report.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
