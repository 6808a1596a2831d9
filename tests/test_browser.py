"""The main path in a real browser: headless Chromium (Debian's, driven by Playwright) against `streamlit run app.py`
on a free local port. Train `tiny` for one epoch on the embedded sample, watch the curve and the finish, evaluate it
(confusion matrix), classify an uploaded image (top-k chart). Screenshots of each page go to test-artifacts/."""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import helpers
import numpy as np
import pytest

from cifar_core import data, images

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = helpers.needs_chromium()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = helpers.free_port()
    # As a user runs it, with the standby process that Start hands its job to (it exits after 120 s unused).
    env = {**os.environ, "CIFAR_RUNS_DIR": str(tmp_path_factory.mktemp("runs")), "CIFAR10_DATA": "sample",
           "CIFAR_CORE_STANDBY": "1", "CIFAR_CORE_STANDBY_IDLE_S": "120"}
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("streamlit did not answer /_stcore/health within 60 s")
    yield url
    os.killpg(process.pid, 15)
    process.wait(timeout=20)


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=helpers.CHROMIUM, args=helpers.CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def _choose(page, label: str, option: str) -> None:
    page.get_by_label(label, exact=True).first.click()
    page.get_by_role("option", name=option, exact=True).click()


def test_train_evaluate_classify(server, page, tmp_path):
    page.goto(f"{server}/train")
    page.get_by_role("heading", name="Train").wait_for()
    # A deep link into a fresh server still goes through app.py: the shared sidebar is there.
    page.locator("[data-testid='stSidebar']").get_by_text("Data source").wait_for()
    _choose(page, "Model", "preset tiny")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("finished", exact=False).first.wait_for(timeout=120_000)
    page.locator("[data-testid='stPlotlyChart']").first.wait_for()
    assert page.locator(".js-plotly-plot .scatterlayer .trace").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "train.png"), full_page=True)

    page.goto(f"{server}/evaluate")
    page.get_by_role("heading", name="Evaluate").wait_for()
    page.get_by_role("button", name="Evaluate").click()
    page.get_by_role("heading", name="Confusion matrix").wait_for()
    page.locator("[data-testid='stPlotlyChart'] .heatmaplayer, [data-testid='stPlotlyChart'] .imagelayer "
                 "image").first.wait_for(state="attached")
    page.screenshot(path=str(ARTIFACTS / "evaluate.png"), full_page=True)

    x, y, names = data.load_sample()
    image = tmp_path / "ship.png"
    image.write_bytes(images.encode_png(np.repeat(np.repeat(x[8], 4, axis=0), 4, axis=1)))
    page.goto(f"{server}/classify")
    page.get_by_role("heading", name="Classify images").wait_for()
    page.locator("input[type=file]").set_input_files(str(image))
    page.get_by_text("ship.png").first.wait_for()
    page.locator("[data-testid='stPlotlyChart'] .barlayer").first.wait_for(state="attached")
    page.screenshot(path=str(ARTIFACTS / "classify.png"), full_page=True)


def test_at_400_px_build_shows_totals_and_diagram_first_and_no_request_leaves_the_server(server, page):
    """A phone-width screen: the Build page's totals and network diagram come before its stack of layers; and no
    page asks any host but the app's own (offline, a font or an icon from elsewhere fails again and again)."""
    elsewhere = []
    phone = page.context.browser.new_page(viewport={"width": 400, "height": 900})
    try:
        page = phone
        page.set_default_timeout(60_000)
        page.on("request", lambda r: None if r.url.startswith((server, "data:", "blob:")) else elsewhere.append(r.url))
        for path, heading in (("", "CIFAR-10 CNN Studio"), ("layers", "Layers"), ("build", "Build a model")):
            page.goto(f"{server}/{path}")
            page.get_by_role("heading", name=heading).wait_for()
        page.locator("[data-testid='stGraphVizChart'] svg").first.wait_for()
        page.screenshot(path=str(ARTIFACTS / "build-400.png"), full_page=True)
        totals = page.locator("[data-testid='stMetric']").first.bounding_box()
        diagram = page.locator("[data-testid='stGraphVizChart']").first.bounding_box()
        first_layer = page.get_by_text("1. PatchWhitening", exact=True).first.bounding_box()
        width = page.evaluate("document.documentElement.scrollWidth")
        page.wait_for_timeout(1000)  # let late requests (a favicon, a font) show up
    finally:
        phone.close()
    assert totals["y"] < 900 and totals["y"] < first_layer["y"]  # the totals on the first screen, above the stack
    assert diagram["y"] < first_layer["y"] and diagram["width"] > 200  # the diagram too, and not squeezed to nothing
    assert width <= 400  # nothing wider than the screen
    assert not elsewhere, elsewhere
