"""Limits and safety: every case of the safety issue, numbered, as a test here or a reference to the test that already
covers it. tests/test_safety_browser.py holds case 25 (and the live-server parts of 2, 7 and 23).

case                                              test
--------------------------------------------------------------------------------------------------------------------
 1 non-image bytes named cat.png                  test_01_* here; test_predict.py::test_non_image_bytes,
                                                  ::test_classify_good_and_bad; test_app_classify.py::
                                                  test_a_valid_and_an_invalid_upload_give_a_prediction_and_a_sentence;
                                                  test_cli.py::test_predict_json_good_and_bad
 2 an executable, a name with a NUL byte          test_02_* here (extension list, AppTest refusals);
                                                  test_safety_browser.py (the browser's own refusal)
 3 decompression bombs 20000² and 10000²          test_predict.py::test_decompression_bomb_refused_quickly,
                                                  ::test_decompression_bombs_use_little_memory; test_03_* here
                                                  (warnings are errors, the project's own Pillow limits)
 4 truncated JPEG                                 test_predict.py::test_truncated_jpeg_is_refused_not_padded
 5 modes 1, L, P+transparency, LA, RGBA, I;16,    test_predict.py::test_mode_1, ::test_mode_l,
   CMYK, 3-frame GIF and WebP                     ::test_mode_p_with_transparency_on_white, ::test_mode_la,
                                                  ::test_mode_rgba_composited_on_white,
                                                  ::test_mode_i16_scaled_not_clipped (value 1000),
                                                  ::test_mode_cmyk_jpeg, ::test_animations_use_the_first_frame
 6 EXIF orientation 6                             test_predict.py::test_exif_orientation_6_is_made_upright
 7 a file over the size limit                     test_07_* here; test_safety_browser.py (HTTP 413, server up)
 8 impossible specs and settings                  test_08_* here; test_spec.py::test_pooling_collapse_names_the_layer,
                                                  ::test_conv_filters_zero, ::test_dropout_rate_out_of_range,
                                                  ::test_unknown_activation_lists_the_allowed_ones;
                                                  test_config.py::test_validate_config_refuses,
                                                  ::test_invalid_spec_at_the_command_line;
                                                  test_jobs.py::test_start_job_refuses_invalid_input_before_creating_...
 9 over 50 million parameters                     test_09_* here; test_spec.py::test_over_the_parameter_limit
10 unknown keys or layer types; preset round trip test_spec.py::test_unknown_layer_type_in_json,
                                                  ::test_unknown_key_in_a_layer, ::test_malformed_json ('colour'),
                                                  ::test_json_round_trip (spec -> JSON -> spec -> model, same count);
                                                  test_config.py::test_config_from_dict_refuses_unknown_settings
11 SIGKILL after epoch 2, resume                  test_11_* here; test_train.py::test_kill_then_resume
12 torn resume metadata                           test_train.py::test_restore_backup_metadata,
                                                  ::test_resume_with_torn_backup_metadata
13 NaN loss at epoch 2                            test_train.py::test_nan_loss_fails_and_keeps_the_last_good_model
14 an exception inside the job                    test_14_* here
15 Start twice quickly, then a reload             test_15_* here; test_app_train.py::
                                                  test_start_a_tiny_job_refuse_a_second_and_watch_it_finish
16 Stop                                           test_16_* here (a hung job's whole process group);
                                                  test_train.py::test_stop_request_then_resume (stopped, model loads);
                                                  test_app_train.py::test_stop_asks_the_live_job_to_stop_...;
                                                  test_safety_browser.py (jobs.stop_job on a real job)
17 killed during a model save                     test_17_* here
18 torn metrics line; NaN as null, gaps           test_runs.py::test_torn_metrics_line,
                                                  ::test_nan_and_infinity_become_null; test_18_* here (chart gaps)
19 a second job on the same run                   test_runs.py::test_second_acquire_raises,
                                                  ::test_lock_freed_when_the_holder_is_killed; test_19_* here
20 disk full while saving                         test_20_* here; test_runs.py::
                                                  test_write_json_failure_leaves_the_old_file
21 Lambda layer, arbitrary module in a .keras     test_predict.py::test_load_model_refuses_a_lambda_layer,
                                                  ::test_no_unsafe_deserialization_anywhere; test_21_* here
22 run ids ../x, /etc/passwd, hf://a/b, gs://...  test_runs.py::test_run_path_refuses,
                                                  ::test_resolve_model_refuses_remote; test_22_* here (pages)
23 a file name that is HTML; config protections   test_23_* here; test_app_classify.py (markdown-like name);
                                                  test_safety_browser.py (no <img> in the DOM, no dialog)
24 twenty predictions: one load, flat memory      test_24_* here; test_predict.py::test_load_model_caches_per_...
25 two sessions uploading while a job trains      test_safety_browser.py::test_25_*
"""

import dataclasses
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
import zipfile
from pathlib import Path

import helpers
import numpy as np
import pytest
from conftest import TINY_RUN_ID

from cifar_core import callbacks as C
from cifar_core import config as configs
from cifar_core import images, jobs, models, predict, runs
from cifar_core import spec as S
from cifar_core import train as T
from cifar_core.data import CIFAR10_CLASSES, load_sample
from cifar_core.presets import get_preset

ROOT = Path(__file__).resolve().parent.parent
TINY = get_preset("tiny").spec
CLASSIFY, TRAIN, RUNS = "pages/classify.py", "pages/train.py", "pages/runs.py"


def sample_png(i: int = 0, scale: int = 2) -> bytes:
    x, _, _ = load_sample()
    return helpers.image_bytes(np.repeat(np.repeat(x[i], scale, axis=0), scale, axis=1))


def copy_run(trained_runs, root: Path, run_id: str = TINY_RUN_ID) -> Path:
    return shutil.copytree(trained_runs / TINY_RUN_ID, root / run_id)


def digests(run_dir: Path) -> dict:
    """{relative path: sha256} of every file of a run except status.json (which a job rewrites) and job.log."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name not in ("status.json", "job.log", "lock")}


def group_alive(pgid: int) -> list[int]:
    """Processes of a process group that are still running (zombies, awaiting their parent's wait, do not count)."""
    alive = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(proc.name))
    return alive


# ---------------------------------------------------------------------------------------------------------------
# 1, 2, 3, 7: uploads


@pytest.fixture(scope="module")
def model_path(trained_runs) -> Path:
    return trained_runs / TINY_RUN_ID / "model.keras"


def test_01_non_image_bytes_named_cat_png(model_path, tmp_path, capsys):
    from cifar_core.__main__ import main

    model = models.load_model(model_path)
    blobs = {"cat.png": b"\x89PNX but not really a PNG" * 40, "cat2.png": b"\x7fELF\x02\x01\x01" + bytes(500)}
    files = [("cat.png", blobs["cat.png"]), ("dog.png", sample_png(1)), ("cat2.png", blobs["cat2.png"])]
    results = predict.classify(model, CIFAR10_CLASSES, files)
    assert [sorted(r) for r in results] == [["error", "file"], ["file", "top"], ["error", "file"]]
    for r in (results[0], results[2]):
        assert r["error"] == "This file is not an image in a supported format (PNG, JPEG, WebP, GIF or BMP)."
    # the command line: one line per file, no traceback, the good file classified, exit status 1
    for name, blob in [*blobs.items(), ("dog.png", sample_png(1))]:
        (tmp_path / name).write_bytes(blob)
    status = main(["predict", str(model_path), *(str(tmp_path / n) for n in ("cat.png", "dog.png", "cat2.png"))])
    out, err = capsys.readouterr()
    assert status == 1 and "Traceback" not in out + err
    lines = out.splitlines()
    assert len(lines) == 3 and lines[0].endswith("cat.png: This file is not an image in a supported format (PNG, "
                                                 "JPEG, WebP, GIF or BMP).")
    assert lines[1].split(": ", 1)[1].split()[0] in CIFAR10_CLASSES


def test_02_upload_extensions_are_plain_lowercase_extensions():
    """Streamlit checks an uploaded file's name on the server only when the uploader's list holds extensions alone:
    one MIME type ('image/png', 'image/*') or shortcut ('image') in it switches that check off."""
    assert images.UPLOAD_EXTENSIONS == ("png", "jpg", "jpeg", "webp", "gif", "bmp")
    for ext in images.UPLOAD_EXTENSIONS:
        assert ext == ext.lower() and ext.isalnum() and "/" not in ext and "." not in ext
        assert ext not in ("image", "audio", "video", "text")
    # that the Classify page hands exactly this list to st.file_uploader: test_02_uploader_* (AppTest)


@pytest.mark.usefixtures("runs_with_model")
def test_02_uploader_refuses_an_executable_and_a_nul_name(open_app):
    """Files that bypass the browser's own filter (test_safety_browser.py) reach Streamlit's server-side name check,
    which raises before the page sees them: nothing is classified, and the browser gets no details."""
    png = sample_png(2)
    for name, payload in (("x.exe", b"MZ\x90\x00" + bytes(300)), ("a.png\0.exe", png), ("a.exe\0.png", png)):
        at = open_app(CLASSIFY)
        uploader = at.file_uploader(key="cls_files")
        assert uploader.allowed_type and all(t.startswith(".") and "/" not in t for t in uploader.allowed_type)
        assert set(uploader.allowed_type) == {f".{e}" for e in images.UPLOAD_EXTENSIONS}
        uploader.set_value([(name, payload, "application/octet-stream")]).run()
        assert len(at.exception) == 1 and at.exception[0].proto.type.endswith("StreamlitAPIException"), name
        assert not at.text and not [c for c in at.get("plotly_chart") if (c.key or "").startswith("top_k_")]
        assert "Invalid file extension" not in at.exception[0].value  # details stay in the server log


@pytest.mark.usefixtures("runs_with_model")
def test_23_a_file_name_that_is_html_is_shown_as_text(open_app):
    at = open_app(CLASSIFY)
    png = sample_png(2)
    name = "<img src=x onerror=alert(1)>.png"
    at.file_uploader(key="cls_files").set_value([(name, png, "image/png")]).run()
    assert not at.exception, at.exception
    assert [t.value for t in at.text] == [name]
    assert not [m for m in at.markdown if "<img" in m.value]
    assert len([c for c in at.get("plotly_chart") if (c.key or "").startswith("top_k_")]) == 1


def _bilevel_png(width: int, height: int) -> bytes:
    from PIL import Image

    return helpers.image_bytes(Image.new("1", (width, height)), "PNG")


def test_03_pillow_limits_are_the_projects_and_bomb_warnings_are_errors(monkeypatch):
    from PIL import Image, ImageFile

    # Pillow's defaults: a warning only above 89 megapixels, an error above 179; truncated files refused. The project
    # sets its own limit and keeps truncated files refused.
    assert Image.MAX_IMAGE_PIXELS == images.MAX_PIXELS == 50_000_000
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    blob = _bilevel_png(3000, 3000)  # 9 megapixels
    assert images.to_input_array(blob).shape == (32, 32, 3)
    # With Pillow's threshold below the image (as if some library lowered it), Pillow only *warns*; the warning is
    # an error here, and the image is refused before its pixels are decoded.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5_000_000)
    with pytest.raises(images.ImageError, match="too large to open safely"):
        images.to_input_array(blob)


def test_07_size_limit_in_the_server_config_and_in_predict():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == images.MAX_BYTES // 2**20 == 10  # MB, refused by the server
    big = sample_png(3) + bytes(images.MAX_BYTES)  # a real PNG with trailing bytes: over the limit all the same
    (result,) = predict.classify(None, CIFAR10_CLASSES, [("big.png", big)])  # never reaches the model
    assert result == {"file": "big.png", "error": "The file is 10.0 MB; the limit is 10 MB."}


# ---------------------------------------------------------------------------------------------------------------
# 8, 9: model specs and settings

REFUSE_BEFORE_KERAS = r"""
import dataclasses, json, os, sys
from cifar_core import jobs, train
from cifar_core import spec as S
from cifar_core.presets import get_preset

def peak_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))

tiny, good = get_preset("tiny").spec, dataclasses.replace(get_preset("tiny").train, data="sample")
cases = {
    "collapse": (S.ModelSpec("c", (S.Conv2D(8),) + (S.MaxPooling2D(2),) * 6 + (S.Flatten(),)), good),
    "valid kernel": (S.ModelSpec("k", (S.Conv2D(8, 5, padding="valid"),) * 8 + (S.Flatten(),)), good),
    "filters 0": (S.ModelSpec("f", (S.Conv2D(0), S.Flatten())), good),
    "dropout 1.5": (S.ModelSpec("d", (S.Conv2D(8), S.Flatten(), S.Dropout(1.5))), good),
    "activation": (S.ModelSpec("a", (S.Flatten(), S.Dense(8, activation="swish"))), good),
    "lr 0": (tiny, dataclasses.replace(good, learning_rate=0.0)),
    "lr -1e-3": (tiny, dataclasses.replace(good, learning_rate=-1e-3)),
    "epochs 0": (tiny, dataclasses.replace(good, epochs=0)),
    "epochs 1e6": (tiny, dataclasses.replace(good, epochs=10**6)),
    "dense 100000": (S.ModelSpec("big", (S.Flatten(), S.Dense(100_000))), good),
}
root = sys.argv[1]
out = {}
for name, (spec, config) in cases.items():
    before = peak_kb()
    messages = []
    for call in (lambda: jobs.start_job(spec, config, root),
                 lambda: train.train(spec, config, os.path.join(root, "direct"))):
        try:
            call()
            messages.append(None)
        except S.SpecError as e:
            messages.append(str(e))
    out[name] = {"messages": messages, "grew_mb": (peak_kb() - before) / 1024}
out["modules"] = sorted(m for m in ("keras", "tensorflow") if m in sys.modules)
out["created"] = sorted(os.listdir(root))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def refusals(tmp_path_factory) -> dict:
    """Every impossible spec and setting handed to jobs.start_job (the Train page's Start) and train.train (the
    job itself), in a fresh process, so that whether Keras was imported can be seen."""
    root = tmp_path_factory.mktemp("refusals")
    out = subprocess.run([sys.executable, "-c", REFUSE_BEFORE_KERAS, str(root)], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("case, start", [
    ("collapse", "layer 7 (MaxPooling2D): pool_size 2"), ("valid kernel", "layer 8 (Conv2D): a 5x5 kernel"),
    ("filters 0", "layer 1 (Conv2D): filters"), ("dropout 1.5", "layer 3 (Dropout): rate"),
    ("activation", "layer 2 (Dense): activation"), ("lr 0", "The training setting learning_rate"),
    ("lr -1e-3", "The training setting learning_rate"), ("epochs 0", "The training setting epochs"),
    ("epochs 1e6", "The training setting epochs")])
def test_08_impossible_specs_and_settings_are_refused_before_keras(refusals, case, start):
    page, job = refusals[case]["messages"]
    assert page == job and page.startswith(start), page
    assert refusals["modules"] == [] and refusals["created"] == []  # Keras never imported; no run directory


def test_09_fifty_million_parameters_are_refused_before_anything_is_allocated(refusals):
    page, job = refusals["dense 100000"]["messages"]
    # Flatten: 32*32*3 = 3,072 -> Dense(100000): 307,300,000 parameters (1.2 GB of float32)
    assert page == job and "the limit is 50,000,000" in page and "layer 2 (Dense) alone has 307,300,000" in page
    assert refusals["dense 100000"]["grew_mb"] < 20
    assert refusals["modules"] == [] and refusals["created"] == []


# ---------------------------------------------------------------------------------------------------------------
# 11, 14, 15, 16: training faults

KILL_IN_EPOCH_3 = r"""
import os, signal, sys
from cifar_core import callbacks as C

C.BATCH_POINT_INTERVAL_S = 0.0  # every batch is a metrics point, so the killed epoch leaves some behind
make_logger = C.make_run_logger

def killing_logger(*args, **kwargs):
    logger = make_logger(*args, **kwargs)
    on_batch_end = logger.on_train_batch_end

    def on_train_batch_end(batch, logs=None):
        on_batch_end(batch, logs)
        if logger.epoch == 3 and batch == 1:  # epochs 1 and 2 are complete and backed up
            os.kill(os.getpid(), signal.SIGKILL)

    logger.on_train_batch_end = on_train_batch_end
    return logger

C.make_run_logger = killing_logger
from cifar_core.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_11_sigkill_after_epoch_2_then_resume_starts_at_epoch_3(tmp_path):
    run = tmp_path / "run"
    job = subprocess.run([sys.executable, "-c", KILL_IN_EPOCH_3, "train", "--preset", "tiny", "--data", "sample",
                          "--limit", "256", "--batch-size", "64", "--epochs", "3", "--run-dir", str(run)],
                         cwd=ROOT, env=helpers.cli_env(), capture_output=True, text=True, timeout=240)
    assert job.returncode == -signal.SIGKILL, job.stderr
    assert runs.read_status(run)["state"] == "interrupted"
    killed = runs.read_metrics(run)
    assert [r["epoch"] for r in killed if r["kind"] == "epoch"] == [1, 2]
    assert [r["step"] for r in killed if r["kind"] == "batch" and r["epoch"] == 3] == [1, 2]  # the killed epoch

    saved = runs.read_json(run / "config.json")
    config = configs.config_from_dict(saved["train"])
    log = helpers.train_in_process(S.from_dict(saved["spec"]), config, run, resume=True)
    assert "Resuming after epoch 2." in log
    records = runs.read_metrics(run)
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2, 3]  # each epoch exactly once
    kept = [r for r in killed if r["epoch"] <= 2]
    assert records[:len(kept)] == kept  # epochs 1-2 as they were
    again = [r["step"] for r in records[len(kept):] if r["kind"] == "batch"]
    assert again == sorted(set(again)) and again[-1] == 4  # epoch 3 once, from its start: no stale steps
    assert all(r["epoch"] == 3 for r in records[len(kept):])
    assert runs.read_status(run)["state"] == "finished"


def test_14_an_exception_inside_the_job(trained_runs, tmp_path):
    """A stopped run resumed with its data gone: the job fails with the reason in its status, every earlier file
    is unchanged, and no process of the job is left."""
    runs_dir = tmp_path / "runs"
    run = copy_run(trained_runs, runs_dir)
    config = runs.read_json(run / "config.json")
    config["train"]["data"] = str(tmp_path / "no-such-data")
    runs.write_json(run / "config.json", config)
    runs.write_status(run, state="stopped")
    before = digests(run)

    jobs.resume_job(TINY_RUN_ID, runs_dir)
    pid = runs.read_json(run / "status.json")["pid"]
    status = helpers.wait_for(lambda: (s := runs.read_status(run)).get("state") not in runs.LIVE_STATES and s,
                              timeout=120)
    assert status["state"] == "failed"
    assert status["failed_on"] == "data" and "no-such-data" in status["error"] and "does not exist" in status["error"]
    assert "\n" not in status["error"] and "Traceback" not in status["error"]
    assert digests(run) == before  # model, metrics, evaluation, backup, config: all as they were
    helpers.wait_for(lambda: not group_alive(pid), timeout=30)
    assert not runs.is_locked(run)
    assert "error: " in jobs.read_job_log(TINY_RUN_ID, runs_dir) and "Traceback" not in jobs.read_job_log(
        TINY_RUN_ID, runs_dir)


def test_15_start_pressed_twice_at_once_then_a_reload(app_env, monkeypatch):
    """Two Start presses at the same moment (two threads, as two sessions of one server are): one job, the other run
    queued behind it (none lost, none doubled); a reloaded page (a new session, without ?run=) shows the job."""
    from streamlit.testing.v1 import AppTest

    spawned = []
    monkeypatch.setattr(jobs, "_spawn", lambda run_dir, extra: spawned.append(run_dir) or None)  # no real process
    preset = get_preset("tiny")
    config = dataclasses.replace(preset.train, data="sample")
    barrier, outcomes = threading.Barrier(2), []

    def press():
        barrier.wait()
        try:
            outcomes.append(jobs.start_job(preset.spec, config))
        except runs.RunError as e:
            outcomes.append(e)

    threads = [threading.Thread(target=press) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    run_ids = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, runs.RunError)]
    assert len(run_ids) == 2 and not refused
    assert len(spawned) == 1
    assert sorted(r["run_id"] for r in runs.list_runs()) == sorted(run_ids)
    assert sorted(p.name for p in app_env.iterdir() if not p.name.startswith(".")) == sorted(run_ids)
    started = [i for i in run_ids if runs.read_status(app_env / i)["state"] == "starting"]
    assert len(started) == 1 and [r["run_id"] for r in jobs.queued_runs()] == [i for i in run_ids if i not in started]
    run_ids = started

    reloaded = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    reloaded.run().switch_page(TRAIN).run()
    assert not reloaded.exception, reloaded.exception
    assert reloaded.subheader[0].value.replace("\\", "") == f"{run_ids[0]}: starting"
    assert reloaded.query_params["run"] == run_ids[0]


HUNG_JOB = r"""
import signal, subprocess, sys, time
from cifar_core import runs
run_dir = sys.argv[1]
lock = runs.RunLock(run_dir).acquire()
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # hung: deaf to the stop file and to SIGTERM
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])  # in the same process group
runs.write_status(run_dir, state="running", epoch=1, epochs=9, pid=__import__("os").getpid(), child=child.pid)
print("ready", flush=True)
time.sleep(300)
"""


def test_16_stop_ends_a_hung_jobs_whole_process_group(tmp_path):
    run = tmp_path / "r1"
    run.mkdir()
    runs.write_json(run / "config.json", {"spec": {"name": "hung"}, "train": {"epochs": 9}})
    job = subprocess.Popen([sys.executable, "-c", HUNG_JOB, str(run)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                           start_new_session=True)
    try:
        assert job.stdout.readline().strip() == "ready"
        status = runs.read_status(run)
        assert status["state"] == "running" and group_alive(job.pid) == sorted([job.pid, status["child"]])
        started = time.time()
        state = jobs.stop_job("r1", tmp_path, wait_s=1.0)
        took = time.time() - started
        job.wait(timeout=10)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    assert took < 10  # the grace period, SIGTERM, then SIGKILL to the group
    assert job.returncode == -signal.SIGKILL
    helpers.wait_for(lambda: not group_alive(job.pid), timeout=10)  # the child went with it
    assert state == "interrupted"  # a job killed before it could save: resumable
    runs.RunLock(run).acquire().release()


# ---------------------------------------------------------------------------------------------------------------
# 17, 18, 19, 20: storage

KILLED_WHILE_SAVING = r"""
import os, signal, sys
from pathlib import Path
from cifar_core.callbacks import save_model_atomic
from cifar_core import config as configs
from cifar_core import images
from cifar_core import models

class Model:
    def save(self, path):
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04 half a zip")
            f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

save_model_atomic(Model(), Path(sys.argv[1]))
"""


def test_17_killed_during_a_model_save(trained_runs, app_env, open_app):
    import ui

    run = copy_run(trained_runs, app_env)
    model_file = run / "model.keras"
    before = model_file.read_bytes()
    out = subprocess.run([sys.executable, "-c", KILLED_WHILE_SAVING, str(model_file)], cwd=ROOT, timeout=60)
    assert out.returncode == -signal.SIGKILL
    leftovers = [p.name for p in run.iterdir() if p.name.endswith(".tmp.keras")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".model.")  # the half-written file, hidden
    assert model_file.read_bytes() == before
    assert models.load_model(model_file).count_params() == 5418
    # no list shows the half-written file
    assert [(r["run_id"], r["has_model"]) for r in runs.list_runs()] == [(TINY_RUN_ID, True)]
    assert set(ui.model_options()) - {"default"} == {TINY_RUN_ID}
    at = open_app(RUNS)
    assert list(at.dataframe[0].value["run id"]) == [TINY_RUN_ID]
    assert not [o for o in at.selectbox[0].options if "tmp" in o]


def test_18_nan_metrics_are_gaps_in_the_charts(tmp_path):
    from cifar_core import charts

    runs.append_metrics(tmp_path, [
        {"kind": "batch", "epoch": 1, "step": 1, "loss": 2.0, "accuracy": 0.1},
        {"kind": "batch", "epoch": 1, "step": 2, "loss": float("nan"), "accuracy": float("inf")},
        {"kind": "batch", "epoch": 1, "step": 3, "loss": 1.5, "accuracy": 0.3},
        {"kind": "epoch", "epoch": 1, "step": 3, "val_loss": float("nan"), "val_accuracy": 0.2},
        {"kind": "epoch", "epoch": 2, "step": 3, "val_loss": 1.0, "val_accuracy": 0.4}])
    records = runs.read_metrics(tmp_path)
    fig = charts.training_curves(records, steps_per_epoch=3)
    by_name = {(t.name, t.xaxis): t for t in fig.data}
    train_loss = by_name[("train loss", "x")]
    assert list(train_loss.y) == [2.0, None, 1.5] and train_loss.connectgaps is False
    assert list(by_name[("train accuracy", "x2")].y) == [0.1, None, 0.3]
    assert list(by_name[("validation loss", "x")].y) == [None, 1.0]
    overlay = charts.overlay_curves({"run": records}, "val_loss")
    assert list(overlay.data[0].y) == [None, 1.0] and overlay.data[0].connectgaps is False


def test_19_a_second_job_on_the_same_run_is_refused(tmp_path):
    run = runs.create_run(tmp_path / "run", TINY, helpers.tiny_config())
    runs.write_status(run, state="running", epoch=2)
    before = (run / "status.json").read_bytes()
    first = runs.RunLock(run).acquire()  # the first job
    try:
        with pytest.raises(runs.RunError, match="in use by another job"):
            T.train(TINY, helpers.tiny_config(), run, resume=True)
        assert (run / "status.json").read_bytes() == before  # the refused job wrote nothing
        assert sorted(p.name for p in run.iterdir()) == ["config.json", "lock", "status.json"]
    finally:
        first.release()
    # after the first job is killed (the kernel drops its flock: test_runs.py::test_lock_freed_when_the_holder_is_
    # killed), the lock can be taken
    runs.RunLock(run).acquire().release()


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_20_disk_full_while_writing_a_json_file(tmp_path, monkeypatch):
    path = tmp_path / "status.json"
    runs.write_json(path, {"state": "running", "epoch": 3})
    before = path.read_bytes()

    from cifar_core import files

    monkeypatch.setattr(files.os, "fsync", _disk_full)  # written to the temporary file, then the disk is full
    with pytest.raises(runs.DiskFullError) as info:
        runs.write_json(path, {"state": "finished"})
    assert str(info.value).startswith("The disk is full: status.json could not be written")
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["status.json"]


def test_20_disk_full_while_saving_a_model(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"the previous model")

    class Model:
        def save(self, tmp):
            Path(tmp).write_bytes(b"PK half")
            _disk_full()

    with pytest.raises(runs.DiskFullError, match="The disk is full: model.keras could not be written"):
        C.save_model_atomic(Model(), path)
    assert path.read_bytes() == b"the previous model" and os.listdir(tmp_path) == ["model.keras"]


def test_20_disk_full_during_training(trained_runs, tmp_path, monkeypatch):
    """A run resumed for a second epoch whose model save hits a full disk: a failed run with a clear reason, the
    epoch-1 model untouched and loadable, and its metrics without an epoch 2."""
    import keras

    run = copy_run(trained_runs, tmp_path)
    model_before = (run / "model.keras").read_bytes()

    def full_disk_save(self, filepath, *args, **kwargs):
        Path(filepath).write_bytes(b"PK half")
        _disk_full()

    monkeypatch.setattr(keras.Model, "save", full_disk_save)
    config = dataclasses.replace(configs.config_from_dict(runs.read_json(run / "config.json")["train"]), epochs=2)
    with pytest.raises(runs.DiskFullError):
        helpers.train_in_process(TINY, config, run, resume=True)
    monkeypatch.undo()
    status = runs.read_status(run)
    assert status["state"] == "failed"
    assert status["error"] == ("The disk is full: model.keras could not be written; what was saved before is kept. "
                               "Free some disk space, then try again.")
    assert (run / "model.keras").read_bytes() == model_before
    assert models.load_model(run / "model.keras").count_params() == 5418
    assert [r["epoch"] for r in runs.read_metrics(run) if r["kind"] == "epoch"] == [1]
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp.keras")] and not runs.is_locked(run)


# ---------------------------------------------------------------------------------------------------------------
# 21, 22, 23: security


def _with_config(source: Path, target: Path, change) -> Path:
    with zipfile.ZipFile(source) as z:
        files = {n: z.read(n) for n in z.namelist()}
    config = json.loads(files["config.json"])
    change(config)
    with zipfile.ZipFile(target, "w") as z:
        for name, data in files.items():
            z.writestr(name, json.dumps(config) if name == "config.json" else data)
    return target


def test_21_a_keras_file_naming_an_arbitrary_module_is_refused_unimported(tmp_path, monkeypatch):
    """A .keras whose config names a module outside Keras (here one that would leave a mark when imported, and os
    itself) is refused by safe mode without importing or calling anything."""
    import keras

    canary = tmp_path / "imported"
    (tmp_path / "canary_module.py").write_text(
        f"open({str(canary)!r}, 'w').write('imported')\n"
        "class Evil:\n"
        "    @classmethod\n"
        "    def from_config(cls, config):\n"
        f"        open({str(canary)!r}, 'w').write('called')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    good = tmp_path / "good.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(good)
    assert models.load_model(good).count_params() == 10  # the control loads

    def layer_from(module, name):
        def change(config):
            config["config"]["layers"][1].update(module=module, class_name=name, registered_name=None)
        return change

    def whole_model_from(module, name):
        def change(config):
            config.update(module=module, class_name=name, registered_name=None, config={"command": "true"})
        return change

    for i, change in enumerate((layer_from("canary_module", "Evil"), whole_model_from("canary_module", "Evil"),
                                layer_from("os", "system"), whole_model_from("os", "system"),
                                whole_model_from("builtins", "eval"))):
        bad = _with_config(good, tmp_path / f"bad{i}.keras", change)
        with pytest.raises(ValueError, match="cannot be loaded safely"):
            models.load_model(bad)
    assert not canary.exists() and "canary_module" not in sys.modules


@pytest.mark.parametrize("ref", ["../x", "/etc/passwd", "hf://a/b", "gs://b/m.keras"])
def test_22_run_identifiers_in_a_link_are_refused(app_env, ref):
    """?run= of the Train page is the one run identifier a user can type into the app: a path or remote location
    there shows nothing and opens nothing."""
    from streamlit.testing.v1 import AppTest

    outside = app_env.parent / "x"
    outside.mkdir()
    runs.write_status(outside, state="finished")  # ../x exists, outside the runs folder
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.query_params["run"] = ref
    at.run().switch_page(TRAIN).run()
    assert not at.exception, at.exception
    assert not at.subheader and any("No run to show yet" in i.value for i in at.info)
    for call in (lambda: runs.run_path(ref), lambda: models.resolve_model(ref, allow_paths=False)):
        with pytest.raises(runs.RunError):
            call()


def test_23_server_config_keeps_the_protections_on():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    server, client = config["server"], config["client"]
    assert server["enableXsrfProtection"] is True
    assert server["enableCORS"] is True
    assert server["enableStaticServing"] is False
    assert client["showErrorDetails"] in ("none", "type", False)  # no tracebacks or messages in the browser
    assert config["browser"]["gatherUsageStats"] is False


# ---------------------------------------------------------------------------------------------------------------
# 24: load


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def test_24_twenty_predictions_load_the_model_once_and_memory_stays_flat(trained_runs, tmp_path, monkeypatch):
    import keras

    path = shutil.copy2(trained_runs / TINY_RUN_ID / "model.keras", tmp_path / "model.keras")
    loads = []
    real_load = keras.saving.load_model
    monkeypatch.setattr(keras.saving, "load_model", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    models._load_model_cached.cache_clear()
    pictures = [("image.png", sample_png(i)) for i in range(4)]

    def one_prediction():
        model = models.load_model(path)
        results = predict.classify(model, CIFAR10_CLASSES, pictures)
        assert all("top" in r for r in results)
        return model

    first = one_prediction()
    for _ in range(3):  # warm-up: TensorFlow's first calls allocate its pools
        one_prediction()
    start = _rss_mb()
    loaded = [one_prediction() for _ in range(20)]
    grown = _rss_mb() - start
    assert len(loads) == 1 and all(m is first for m in loaded)  # cached on (path, mtime)
    assert grown < 50, f"resident memory grew by {grown:.0f} MB over 20 predictions"
    os.utime(path, ns=(time.time_ns(), time.time_ns()))  # a new version of the file is loaded again
    assert models.load_model(path) is not first and len(loads) == 2
