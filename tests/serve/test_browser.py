"""The search page in a real headless Chromium (system package, driven by Playwright).

Skipped when Playwright or the Chromium binary is missing (``apt-get install chromium``; never
``playwright install``).  The screenshot is kept in the test's tmp folder, and copied to
``$UMR_TEST_ARTIFACTS`` when that is set (CI uploads it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.serve.conftest import make_pdf

CHROMIUM = os.environ.get("UMR_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser


@pytest.fixture
def browser() -> Any:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set UMR_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _keep(shot: Path) -> None:
    target = os.environ.get("UMR_TEST_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / shot.name)


def test_search_page_upload_search_and_view(browser: Any, serve: Any, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "manual.pdf", ["Installation manual", "Press the reset button", "Warranty terms"])
    with serve(db=tmp_path / "db", api_key="page-key") as url:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url + "/")
        # the server wants a key: the page asks for it
        page.get_by_label("This server needs an API key").fill("page-key")
        page.get_by_role("button", name="Use key").click()
        page.wait_for_function("document.getElementById('stats').textContent.includes('0 document(s)')")

        # upload a PDF; the progress bar reaches the end and the stats count it
        page.get_by_label("PDFs or images to index").set_input_files(str(pdf))
        page.get_by_role("button", name="Upload and index").click()
        page.wait_for_function("document.getElementById('upload-status').textContent.startsWith('Indexed')",
                               timeout=120_000)
        assert "3 page(s) added" in page.locator("#upload-status").text_content()
        assert page.locator("#upload-progress").evaluate("el => el.value") == 1
        page.wait_for_function("document.getElementById('stats').textContent.includes('1 document(s), 3 page(s)')")

        # keyboard only: type the query, press Enter
        page.get_by_label("Query", exact=True).fill("reset button")
        page.get_by_label("Query", exact=True).press("Enter")
        page.wait_for_selector("#results li")
        page.wait_for_function(
            "[...document.querySelectorAll('#results img')].length === 3 && "
            "[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)",
            timeout=30_000,
        )
        texts = page.locator("#results li").all_text_contents()
        assert len(texts) == 3 and all("manual.pdf" in t and "score" in t for t in texts)
        assert sorted(int(t.split("page ")[1].split(" ")[0]) for t in texts) == [1, 2, 3]
        shot = tmp_path / "umr-search-page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 1000
        _keep(shot)

        # a thumbnail opens the page at full size in a dialog; Escape closes it
        first = page.locator("#results li button.thumb").first
        first.focus()
        page.keyboard.press("Enter")
        page.wait_for_function("document.getElementById('viewer').open && "
                               "document.getElementById('viewer-image').naturalWidth > 0")
        assert page.locator("#viewer-image").evaluate("i => i.naturalWidth") >= 300
        page.keyboard.press("Escape")
        page.wait_for_function("!document.getElementById('viewer').open")

        # rerank switch: results come back reranked
        page.get_by_label("Rerank with the MLLM reranker").check()
        page.get_by_role("button", name="Search").click()
        page.wait_for_function("document.getElementById('search-status').textContent.includes('reranked')")
        assert "rerank" in page.locator("#results li").first.text_content()
        assert not errors, errors
