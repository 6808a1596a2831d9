"""Limits and safety, case 25 (and the live-server parts of cases 2, 7 and 23; the full case table is in
tests/test_safety.py): `streamlit run app.py` on a free local port, a tiny training job started through
cifar_core.jobs, and two headless Chromium sessions uploading images on /classify at the same time.

Each session must show, for every file, the top-1 class that cifar_core.predict.classify gives in this process for the
same model; the job must keep training meanwhile and stop cleanly at the end. On the way: the browser refuses an .exe
(no request leaves it), a file name that is HTML is shown as text, and an upload over the server's limit is answered
413 while the server stays up.
"""

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import helpers
import numpy as np
import pytest
from conftest import TINY_RUN_ID

from cifar_core import data, images, jobs, metrics, models, predict, runs
from cifar_core.presets import get_preset

ROOT = Path(__file__).resolve().parent.parent
FIXED = "zz-fixed-model"  # the first run in the Classify page's list of models (runs are listed newest id first)
HTML_NAME = "<img src=x onerror=alert(1)>.png"

pytestmark = helpers.needs_chromium()


def _healthy(url: str) -> bool:
    try:
        return urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok"
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    for proc in Path("/proc").iterdir():
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _clear_images(model, class_names, count: int, tta: str) -> list[tuple[bytes, str]]:
    """(PNG upload, expected top-1, as Classify computes it: with the model's test-time augmentation) for `count`
    sample images whose top-1 leads the runner-up by a clear margin, so that no rounding between two processes can
    decide the comparison."""
    x, _, _ = data.load_sample()
    chosen = []
    for i in range(len(x)):
        png = images.encode_png(np.repeat(np.repeat(x[i], 2, axis=0), 2, axis=1))  # 64x64: resized like an upload
        (result,) = predict.classify(model, class_names, [("image.png", png)], k=2, tta=tta)
        first, second = result["top"]
        if first["probability"] - second["probability"] > 0.05:  # predictions run in bfloat16: ~1e-2 rounding
            chosen.append((png, first["label"]))
        if len(chosen) == count:
            return chosen
    pytest.fail("too few sample images with a clear top-1")


TOP1_JS = """(names) => names.map(name => {
    const texts = [...document.querySelectorAll('[data-testid="stText"]')].filter(t => t.innerText.trim() === name);
    if (texts.length !== 1) return null;
    const box = texts[0].closest('[data-testid="stVerticalBlock"]');
    for (const chart of box.querySelectorAll('.js-plotly-plot')) {
        const bars = chart.data && chart.data[0];
        if (bars && bars.type === 'bar' && bars.x && bars.x.length) {
            const values = Array.from(bars.x);
            return bars.y[values.indexOf(Math.max(...values))];
        }
    }
    return null;
})"""


@pytest.fixture
def stack(trained_runs, tmp_path):
    """A runs folder with a finished tiny run (FIXED), a training job on the same folder, and a server on it."""
    runs_dir = tmp_path / "runs"
    shutil.copytree(trained_runs / TINY_RUN_ID, runs_dir / FIXED)
    preset = get_preset("tiny")
    config = dataclasses.replace(preset.train, data="sample", limit=512, epochs=500)
    run_id = jobs.start_job(preset.spec, config, runs_dir)
    port = helpers.free_port()
    log = open(tmp_path / "server.log", "wb")
    env = {**os.environ, "CIFAR_RUNS_DIR": str(runs_dir), "CIFAR10_DATA": "sample"}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        helpers.wait_for(lambda: _healthy(url), timeout=60, interval=0.5, process=server)
        yield {"url": url, "runs_dir": runs_dir, "run_id": run_id, "run_dir": runs_dir / run_id}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
        if runs.is_locked(runs_dir / run_id):
            jobs.stop_job(run_id, runs_dir, wait_s=5)


def test_25_two_sessions_classify_while_a_job_trains(stack):
    from playwright.sync_api import sync_playwright

    started = time.time()
    # the Classify page's first model: the shipped default if this installation has it, else the FIXED run
    model_dir = models.DEFAULT_RUN if (models.DEFAULT_RUN / "model.keras").exists() else stack["runs_dir"] / FIXED
    model = models.load_model(model_dir / "model.keras")
    class_names = models.class_names_for(model_dir, model.output_shape[-1])
    images = _clear_images(model, class_names, 5, models.tta_for(model_dir))
    uploads = {
        "a": [(f"a{i}.png", png, label) for i, (png, label) in enumerate(images[:3])],
        "b": [("b0.png", images[3][0], images[3][1]), (HTML_NAME, images[4][0], images[4][1])],
    }
    run_dir = stack["run_dir"]
    status = helpers.wait_for(lambda: (s := runs.read_status(run_dir)).get("state") == "running" and s, timeout=60)
    job_pid = status["pid"]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=helpers.CHROMIUM, args=helpers.CHROMIUM_ARGS)
        pages, requests, dialogs = {}, {"a": [], "b": []}, []
        try:
            for key in uploads:  # two browser contexts: two sessions with their own cookies
                page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                page.set_default_timeout(60_000)
                page.on("request", lambda r, key=key: requests[key].append(r) if "upload_file" in r.url else None)
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                page.goto(f"{stack['url']}/classify")
                pages[key] = page
            for page in pages.values():
                page.get_by_role("heading", name="Classify images").wait_for()
            metrics_before = len(metrics.read_metrics(run_dir))

            # both sessions upload, then both wait: their scripts run at the same time, beside the training job
            for key, page in pages.items():
                page.locator("input[type=file]").set_input_files(
                    [{"name": name, "mimeType": "image/png", "buffer": png} for name, png, _ in uploads[key]])
            for key, page in pages.items():
                names = [name for name, _, _ in uploads[key]]
                page.wait_for_function(f"names => ({TOP1_JS})(names).every(Boolean)", arg=names, timeout=90_000)
                shown = page.evaluate(TOP1_JS, names)
                assert shown == [label for _, _, label in uploads[key]], key

            # 23: the HTML file name is text: no <img src=x> element, no alert
            b = pages["b"]
            assert b.get_by_text(HTML_NAME, exact=True).count() == 1
            assert b.locator("img[src='x']").count() == 0 and dialogs == []

            # 2: the browser itself refuses an executable: no upload request leaves it
            a = pages["a"]
            sent = len(requests["a"])
            a.locator("input[type=file]").set_input_files(
                [{"name": "x.exe", "mimeType": "application/x-msdownload", "buffer": b"MZ\x90\x00" + bytes(400)}])
            a.get_by_text("files are not allowed").first.wait_for()
            assert len(requests["a"]) == sent

            # 7: an upload over maxUploadSize is answered 413 by the server, which stays up and keeps classifying
            session_id = requests["a"][0].url.rstrip("/").split("/")[-2]
            xsrf = next(c["value"] for c in a.context.cookies() if c["name"] == "_streamlit_xsrf")
            response = a.request.put(f"{stack['url']}/_stcore/upload_file/{session_id}/{uuid.uuid4()}",
                                     multipart={"file": {"name": "big.png", "mimeType": "image/png",
                                                         "buffer": bytes(11 * 2**20)}},
                                     headers={"X-Xsrftoken": xsrf}, fail_on_status_code=False)
            assert response.status == 413
            assert _healthy(stack["url"])
            a.locator("input[type=file]").set_input_files(
                [{"name": "after.png", "mimeType": "image/png", "buffer": images[0][0]}])
            a.wait_for_function(f"names => ({TOP1_JS})(names).every(Boolean)", arg=["after.png"], timeout=60_000)
            assert a.evaluate(TOP1_JS, ["after.png"]) == [images[0][1]]
        finally:
            browser.close()

    # the job trained on meanwhile, and Stop ends it cleanly
    assert runs.read_status(run_dir)["state"] == "running"
    # a liveness check, not a speed one: the sessions beside the job (and other tests) may slow its epochs
    helpers.wait_for(lambda: len(metrics.read_metrics(run_dir)) > metrics_before, timeout=120)
    asked = time.time()
    assert jobs.stop_job(stack["run_id"], stack["runs_dir"]) == "stopped"
    assert time.time() - asked < 15
    helpers.wait_for(lambda: not _group_alive(job_pid), timeout=30)  # TensorFlow's teardown is slow under load
    assert models.load_model(run_dir / "model.keras").output_shape == (None, 10)
    assert time.time() - started < 150
