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
def runs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def server(runs_dir):
    port = helpers.free_port()
    # As a user runs it, with the standby process that Start hands its job to (it exits after 120 s unused).
    env = {**os.environ, "CIFAR_RUNS_DIR": str(runs_dir), "CIFAR10_DATA": "sample",
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


def _choose(page, label: str, option: str, typed: bool = False) -> None:
    """Picks an option of a selectbox; typed: types it first, for a long list whose options below the fold the
    dropdown does not draw."""
    page.get_by_label(label, exact=True).first.click()
    if typed:
        page.keyboard.type(option)
    page.get_by_role("option", name=option, exact=True).click()


def test_train_evaluate_classify(server, page, tmp_path):
    page.goto(f"{server}/train")
    page.get_by_role("heading", name="Train").wait_for()
    # A deep link into a fresh server still goes through app.py: the shared sidebar is there.
    page.locator("[data-testid='stSidebar']").get_by_text("Data source").wait_for()
    _choose(page, "Model", "preset tiny")
    _fill(page, "Epochs", "2")
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


def _fill(page, label: str, value: str) -> None:
    """Types into the one field of that label, until the page shows the value. While a rerun redraws the page,
    Streamlit shows the old widgets beside the new ones for a moment (a new model gives its settings new keys), and a
    rerun still drawing the last choice can put the field back to its old value: so wait until there is exactly one
    field, type, and type again if the value did not stay."""
    from playwright.sync_api import Error, expect

    field = page.get_by_label(label, exact=True)

    def shown():  # as the field formats it: "0.3" shows as 0.30
        try:
            text = field.input_value(timeout=2_000)
        except Error:  # another rerun drawing the old field beside the new one: look again
            return False
        if not value or not text:
            return text == value
        try:
            return float(text) == float(value)
        except ValueError:  # a text field
            return text == value

    for _ in range(4):
        for _ in range(20):  # a live page reruns every second, so the moment can pass between the count and the typing
            expect(field).to_have_count(1, timeout=60_000)
            try:
                field.fill(value, timeout=2_000)
                field.press("Enter", timeout=2_000)
                break
            except Error:
                page.wait_for_timeout(300)
        page.wait_for_timeout(500)  # the rerun the new value causes
        deadline = time.time() + 5
        while time.time() < deadline:
            if shown():
                return
            page.wait_for_timeout(200)
    raise AssertionError(f"the field {label!r} did not keep the value {value!r}")


def test_runs_queued_behind_a_job_a_sweep_and_what_changed(server, page, runs_dir):
    """Issue 16's path for a person: three runs started while a job trains wait in a queue and train in order; a
    sweep of tiny is a form and a button, with Optuna's figures; two runs side by side show what changed."""
    from cifar_core import runs

    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{server}/train")
    page.get_by_role("heading", name="New run").wait_for()
    _choose(page, "Model", "preset tiny")
    _fill(page, "Time budget (minutes)", "0.3")  # a job that trains for 18 s: long enough to queue behind
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("running", exact=False).first.wait_for(timeout=60_000)
    _fill(page, "Time budget (minutes)", "")
    _fill(page, "Epochs", "1")
    for place in ("1st", "2nd", "3rd"):
        page.get_by_role("button", name="Start training").click()
        page.get_by_text(f"Queued, {place}", exact=False).first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "train-queue.png"), full_page=True)

    def all_finished():
        rows = runs.list_runs(runs_dir)
        return len(rows) >= 4 and all(r["state"] == "finished" for r in rows) and rows

    rows = helpers.wait_for(all_finished, timeout=240, interval=1.0)
    finished_at = [runs.read_status(runs_dir / r["run_id"])["updated"] for r in sorted(rows, key=lambda r: r["run_id"])]
    assert finished_at == sorted(finished_at)  # one slot: each started when the one ahead had ended, in order

    page.goto(f"{server}/runs")
    page.get_by_role("heading", name="What changed between two runs").wait_for()
    page.get_by_text("Final metrics", exact=True).wait_for()
    page.screenshot(path=str(ARTIFACTS / "runs-compare.png"), full_page=True)

    page.goto(f"{server}/sweep")
    page.get_by_role("heading", name="Sweep").wait_for()
    _fill(page, "Trials", "3")
    _fill(page, "Epochs per trial", "1")
    _fill(page, "Limit training images", "300")
    page.get_by_role("button", name="Start sweep").click()
    page.get_by_text("3/3 trials", exact=False).first.wait_for(timeout=240_000)
    page.locator("[data-testid='stPlotlyChart']").nth(1).wait_for(timeout=60_000)  # Optuna's figures, drawn
    page.get_by_role("button", name="Open the best trial in Train").first.wait_for()  # a rerun may show two
    page.screenshot(path=str(ARTIFACTS / "sweep.png"), full_page=True)



def test_a_renamed_run_is_named_anew_in_every_closed_picker(server, page, runs_dir):
    """Streamlit's frontend keeps the text a closed selectbox showed for its key: after Rename, the Runs page's
    pickers named the run by its old name until a reload (ui.run_select keys them by the titles)."""
    import shutil

    run_id = "20250101-000002-tiny"
    for other in ("20250101-000001-tiny", run_id):
        shutil.copytree(helpers.tiny_run(), runs_dir / other)
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{server}/runs")
    page.get_by_role("heading", name="What changed between two runs").wait_for()
    _choose(page, "Run B", run_id, typed=True)  # the module's other tests have made many runs
    _choose(page, "Run", run_id, typed=True)
    # Until the rerun has drawn this run's section, the Name box is the last run's: typed there, the text went to a
    # box the rerun then dropped, and Rename renamed the run to its own name (the test failed on a loaded machine).
    page.locator("[data-testid='stExpander'] summary", has_text=f"Delete {run_id}").wait_for()
    _fill(page, "Name", "cats against dogs")  # a rerun may draw the old box beside the new one for a moment
    page.get_by_role("button", name="Rename", exact=True).click()
    page.get_by_text("Renamed to cats against dogs.").wait_for()
    for label in ("Run", "Run B"):  # and each still on the run it showed
        box = page.get_by_role("combobox", name=label, exact=True)
        helpers.wait_for(lambda box=box: box.input_value() == f"cats against dogs ({run_id})", timeout=10)


def test_a_whole_number_box_reads_what_is_typed(server, page):
    """Streamlit's integer box parses what is typed with JavaScript's parseInt: "1e12" became 1 and "2.5" became 2,
    and the page went on with them. ui.number_input's float box reads them whole, and the page names them."""
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{server}/sweep")
    page.get_by_role("heading", name="Sweep", exact=True).wait_for()
    for typed, shown in (("1e12", "1,000,000,000,000"), ("2.5", "2.5")):
        _fill(page, "Trials", typed)
        page.get_by_text(f"Trials must be a whole number from 1 to 10,000, got {shown}.", exact=True).wait_for()
    _fill(page, "Trials", "7")
    page.get_by_text("Trials must be", exact=False).wait_for(state="detached")
