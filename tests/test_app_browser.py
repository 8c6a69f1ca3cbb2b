"""The Space in a real headless Chromium (Debian's, driven by Playwright): restore, read the result, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from psp_hub import PSPGAN, tiny_config
from psp_hub.common.imageio import load_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_app import start_app, stop_app

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "outputs" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser
# Waits are upper bounds, not expectations: each returns as soon as the page shows the text (about 1-3 s on a quiet
# machine). 30 s timed out twice for an upload preview in one full-suite run on a clean clone whose browser tests
# pass in 15 s alone, so the bounds are generous enough for a busy 2-core CI machine.


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app_browser")
    PSPGAN(tiny_config(64)).save_pretrained(tmp / "tiny")
    proc, url = start_app(tmp, tmp / "tiny")  # cached examples on, as on the Space
    yield url, tmp / "app.log"
    stop_app(proc)


@pytest.fixture(scope="module")
def app_url(app_server):
    return app_server[0]


@pytest.fixture(scope="module")
def browser_page(app_url, tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    outside = []
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path="/usr/bin/chromium",
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
            accept_downloads=True,
        )

        def guard(route):
            url = route.request.url
            if url.startswith(("http://127.0.0.1", "data:", "blob:")):
                return route.continue_()
            outside.append(url)
            return route.abort()

        context.route("**/*", guard)
        page = context.new_page()
        page.goto(app_url)
        page.wait_for_selector("#restore-button", timeout=180_000)
        yield page, outside
        context.close()


def test_the_page_opens_on_the_personalised_example_without_start_up_warnings(browser_page, app_server):
    page, outside = browser_page
    status = page.locator("#result-status")
    status.get_by_text("personalised with 4 reference(s)").wait_for(timeout=180_000)  # preloaded first example
    assert "Restored 1 of 1" in status.inner_text()
    assert page.locator("#result-slider img").count() >= 1
    log = app_server[1].read_text()
    assert "Warning" not in log and "Traceback" not in log, log[-2000:]  # caching the examples warned nobody
    assert outside == []


def test_examples_are_shown_as_thumbnails(browser_page):
    page, _ = browser_page
    examples = page.locator(".gallery, table").filter(has=page.locator("img"))
    assert examples.first.locator("img").count() >= 4 * (1 + 3)  # each row: the photo and its references


def test_upload_photo_and_three_references_and_read_the_result(browser_page, samples):
    page, outside = browser_page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "app_start.png"), full_page=True)
    assert page.locator("#untrained-warning").is_visible()  # the test model is untrained: the page says so
    photo = samples / "references" / "celeba_7222" / "010582.jpg"  # 601 x 800
    refs = sorted((samples / "references" / "celeba_7222").glob("*.jpg"))[:3]
    page.locator("#photo-input button[aria-label='Clear']").first.click(timeout=60_000)
    page.locator("#photo-input input[type=file]").set_input_files(str(photo))
    page.locator("#reference-input button[aria-label='Clear']").first.click(timeout=60_000)
    page.locator("#reference-input input[type=file]").set_input_files([str(r) for r in refs])
    page.get_by_text("601 x 800 pixels").wait_for(timeout=120_000)  # preview of the upload
    page.locator("#restore-button").click()
    page.locator("#result-status").get_by_text(refs[0].name).wait_for(timeout=240_000)  # this request's result
    link = page.locator("#result-download a").first
    link.wait_for(timeout=120_000)
    data = page.request.get(link.get_attribute("href")).body()
    assert load_image(data).shape == (1600, 1202, 3)  # 2x upscale of the photo
    status = page.locator("#result-status").inner_text()
    assert "Restored 1 of 1" in status and "3 reference(s)" in status
    assert page.locator("#result-slider img").count() >= 1
    assert page.locator("#result-references img").count() == 3
    page.wait_for_timeout(500)
    page.screenshot(path=str(SCREENSHOTS / "app_result.png"), full_page=True)
    assert outside == []  # the page fetched nothing from outside the server


def test_text_file_as_photo_shows_the_message(browser_page, tmp_path):
    page, outside = browser_page
    bad = tmp_path / "holiday.jpg"
    bad.write_text("this is a text file with a .jpg name")
    page.locator("#photo-input button[aria-label='Clear']").first.click(timeout=60_000)
    page.locator("#photo-input input[type=file]").set_input_files(str(bad))
    page.get_by_text("Cannot use this photo").wait_for(timeout=120_000)
    page.locator("#restore-button").click()
    toast = page.locator(".toast-body", has_text="not an image file")
    toast.first.wait_for(timeout=120_000)
    page.screenshot(path=str(SCREENSHOTS / "app_error_toast.png"))
    status = page.locator("#result-status")
    status.get_by_text("not an image file").wait_for(timeout=120_000)  # also in the page, stale results cleared
    assert "Cannot restore this photo" in status.inner_text() and "Restored" not in status.inner_text()
    assert page.locator("#result-download a").count() == 0
    assert "Traceback" not in page.content()
    page.screenshot(path=str(SCREENSHOTS / "app_error.png"), full_page=True)
    assert outside == []


def test_cached_example_fills_the_outputs_and_the_inputs(browser_page):
    page, _ = browser_page
    page.reload()
    page.wait_for_selector("#restore-button", timeout=180_000)
    examples = page.locator(".gallery, table").filter(has=page.locator("img")).first
    examples.locator("img").nth(5).click()  # a thumbnail of the second example (celeba_7222: photo + 3 references)
    page.locator("#result-status").get_by_text("000131.jpg").wait_for(timeout=180_000)
    assert "Restored 1 of 1" in page.locator("#result-status").inner_text()
    page.locator("#photo-input").get_by_text("celeba_7222_lq").first.wait_for(timeout=120_000)  # inputs filled too
    assert page.locator("#reference-input").get_by_text("000131").count() == 1
