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
 8 impossible specs and settings                  test_08_* here; test_shapes.py::test_pooling_collapse_names_the_layer;
                                                  test_spec.py::test_conv_filters_zero,
                                                  ::test_dropout_rate_out_of_range,
                                                  ::test_unknown_activation_lists_the_allowed_ones;
                                                  test_config.py::test_validate_config_refuses,
                                                  ::test_invalid_spec_at_the_command_line;
                                                  test_jobs.py::test_start_job_refuses_invalid_input_before_creating_...
 9 over 50 million parameters                     test_09_* here; test_shapes.py::test_over_the_parameter_limit
10 unknown keys or layer types; preset round trip test_spec_io.py::test_unknown_layer_type_in_json,
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

The second safety issue ("Safe to share, hard to break"), its items numbered on from 26:
26 a pickle with __reduce__ as a CIFAR batch      test_26_* (folder and .tar.gz; CLI train, evaluate, evaluate_model)
27 data roots in the app                          test_27_* (with the pages that take a data source)
28 the server on every interface                  test_28_* (loopback in config.toml; README on sharing)
29 run and class names as Plotly markup           test_29_* (every chart's user text escaped)
30 train --run-dir DIR over a folder's files      test_30_* (refused, one sentence, every byte kept)
31 torn first-epoch backup, death in native code  test_31_* (fallback or fresh start, epochs once, interrupted,
   a full disk in Keras's backup                  the disk-full sentence); test_callbacks.py::
                                                  test_restore_backup_metadata
32 evaluating the shipped model                   test_32_* (the package unchanged; the cache folder instead)
33 leftovers, Stop at Start, standby, Ctrl-C      test_33_*
34 one malformed run file                         test_34_* (listed as unreadable with the reason; every page;
                                                  `runs`; Delete still works; a garbage model.keras)
35 data-source errors                             test_35_* (one sentence each, no run folder)
36 the decode cache                               test_36_* (torn, empty, three processes at once, read-only)
37 bounded work                                   test_37_* (spec JSON, --config, the Build page, 60 MB of
                                                  metrics, a .keras zip bomb, a 2 GB image file)
38 file-system errors on pages                    test_38_* (read-only runs folder: Rename, Delete, Start; a
                                                  symlinked run)
39 validation gaps                                test_39_* (seed, input_shape, 1,001 classes, duplicate keys,
                                                  saliency --opacity nan and --out a folder)

Found by an attack on the engine's readers (2026-12-07), numbered on from 40:
40 a named pipe or /dev/zero as a run file        test_40_* (runs, metrics, job log, evaluations: no wait, no
                                                  endless read); test_files.py, test_metrics.py
41 a hostile eval.json                            test_41_* (every field checked; another source is not shown)
42 a small batch file of many references          test_42_* (refused before any copy)
43 a decode cache naming a huge array             test_43_* (its header read first; rebuilt)
44 a small model.keras naming a billion weights   test_44_* (refused before they are allocated)
45 uploads that cost memory beyond their pixels   test_45_* (a thin PNG refused; 16-bit averaged small);
   a sweep trial as Markdown, a server path       test_compare.py::test_compare_runs_of_one_sweep;
                                                  test_studies.py::test_redact_and_driver
46 a spec of few weights and huge activations     test_shapes.py::test_a_training_batch_must_fit_in_memory;
                                                  test_jobs.py::test_start_job_refuses_invalid_input_before_...
47 a second attack: a pipe as a batch file, an    test_47_* (each refused at once); test_runs.py::
   archive of a million members, links out of a   test_a_page_starts_only_runs_whose_data_source_it_offers;
   dataset, a page resuming an unoffered source,  test_studies.py::test_redact_and_driver
   class names in image captions, a password in
   a storage URL's query

Found by a third attack (2026-12-07), numbered on from 48:
48 two runs started in one second, a JPEG of     test_48_* (each refused, or kept apart); test_runs.py::
   thousands of scans, palette and WebP images   test_runs_started_at_once_get_a_folder_each_and_never_...;
   that cost 3-4 times their pixels, names that   test_train.py::test_a_fresh_run_made_for_other_settings_...
   are not UTF-8, --out a device or a link, a
   model file of another network or of huge
   activations, a pipe as --spec, sqlite:///

Found by a fourth attack (2026-12-07), numbered on from 49:
49 run files as links, an MPO JPEG of thousands  test_49_* (each refused or bounded); test_readers.py,
   of scans, a run-length BMP, a .keras file      test_metrics.py, test_compare.py, test_sources.py,
   listing a member many times or with state,     test_evaluate.py, test_jobs.py, test_standby.py,
   odd status, study and pid records, ~nouser,    test_studies.py, test_explain.py, test_estimate.py
   deep folders, huge tar headers, junk metrics
"""

import dataclasses
import errno
import hashlib
import io
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
from cifar_core import images, jobs, locks, metrics, models, predict, runs, shapes, sources, spec_io
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
    from PIL import Image

    # every extension names one of the formats decoding accepts, and every such format has one
    assert {Image.registered_extensions()[f".{ext}"] for ext in images.UPLOAD_EXTENSIONS} == set(images.FORMATS)
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
    assert Image.MAX_IMAGE_PIXELS == images.MAX_PIXELS  # the project's limit is Pillow's too
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
    ("collapse", "layer 7 (MaxPooling2D): pool_size 2"), ("valid kernel", "layer 8 (Conv2D): a 5 × 5 kernel"),
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
    killed = metrics.read_metrics(run)
    assert [r["epoch"] for r in killed if r["kind"] == "epoch"] == [1, 2]
    assert [r["step"] for r in killed if r["kind"] == "batch" and r["epoch"] == 3] == [1, 2]  # the killed epoch

    saved = runs.read_json(run / "config.json")
    config = configs.config_from_dict(saved["train"])
    log = helpers.train_in_process(spec_io.from_dict(saved["spec"]), config, run, resume=True)
    assert "Resuming after epoch 2." in log
    records = metrics.read_metrics(run)
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
    assert "error: " in runs.read_job_log(TINY_RUN_ID, runs_dir) and "Traceback" not in runs.read_job_log(
        TINY_RUN_ID, runs_dir)


def test_15_start_pressed_twice_at_once_then_a_reload(app_env, monkeypatch):
    """Two Start presses at the same moment (two threads, as two sessions of one server are): one job, the other run
    queued behind it (none lost, none doubled); a reloaded page (a new session, without ?run=) shows the job."""
    from streamlit.testing.v1 import AppTest

    spawned = []
    monkeypatch.setattr(jobs, "spawn", lambda command, log, gpu=None: spawned.append(command))  # no real process
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
from cifar_core import sources

class Model:
    def save(self, path):
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04 half a zip")
            f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

save_model_atomic(Model(), Path(sys.argv[1]))
"""


def test_17_killed_during_a_model_save(trained_runs, app_env, open_app):
    from ui import model_cache

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
    assert set(model_cache.model_options()) - {"default"} == {TINY_RUN_ID}
    at = open_app(RUNS)
    assert list(at.dataframe[0].value["run id"]) == [TINY_RUN_ID]
    assert not [o for o in at.selectbox[0].options if "tmp" in o]


def test_18_nan_metrics_are_gaps_in_the_charts(tmp_path):
    from cifar_core import charts

    metrics.append_metrics(tmp_path, [
        {"kind": "batch", "epoch": 1, "step": 1, "loss": 2.0, "accuracy": 0.1},
        {"kind": "batch", "epoch": 1, "step": 2, "loss": float("nan"), "accuracy": float("inf")},
        {"kind": "batch", "epoch": 1, "step": 3, "loss": 1.5, "accuracy": 0.3},
        {"kind": "epoch", "epoch": 1, "step": 3, "val_loss": float("nan"), "val_accuracy": 0.2},
        {"kind": "epoch", "epoch": 2, "step": 3, "val_loss": 1.0, "val_accuracy": 0.4}])
    records = metrics.read_metrics(tmp_path)
    train_loss, val_loss = charts.training_curve(records, "loss", steps_per_epoch=3).data
    assert list(train_loss.y) == [2.0, None, 1.5] and train_loss.connectgaps is False
    assert list(charts.training_curve(records, "accuracy", steps_per_epoch=3).data[0].y) == [0.1, None, 0.3]
    assert list(val_loss.y) == [None, 1.0]
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
    runs.write_status(run, state="stopped")  # as after Stop: a finished run is not resumed
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
    assert [r["epoch"] for r in metrics.read_metrics(run) if r["kind"] == "epoch"] == [1]
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
    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Dense(2), keras.layers.GlobalMaxPooling2D()]).save(good)
    assert models.load_model(good).count_params() == 8  # the control loads

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


# ===============================================================================================================
# The second safety issue: 26 onward (27, data roots in the app, comes with the pages that take a data source).

EVIL_RUN_NAME = '<a href="https://evil.example">log in</a>'


def cli(capsys, *args) -> tuple[int, str, str]:
    """The CLI in this process (`python -m cifar_core ARGS`): (exit status, stdout, stderr)."""
    from cifar_core.__main__ import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_sentence(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def tree_digest(root: Path) -> dict:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def read_only():
    """read_only(path): makes a folder unwritable for the rest of the test. As root, permission bits are ignored, so
    the folder is made immutable (chattr +i) instead; skipped where neither works."""
    made = []

    def make(path: Path) -> Path:
        if os.geteuid() == 0:
            if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(path)],
                                                           capture_output=True).returncode:
                pytest.skip("running as root without chattr: a folder cannot be made read-only")
        else:
            path.chmod(0o555)
        made.append(path)
        try:
            (path / ".probe").touch()
        except OSError:
            return path
        pytest.skip("this file system ignores read-only folders")

    yield make
    for path in made:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        else:
            path.chmod(0o755)


def evil_pickle(canary: Path) -> bytes:
    class Evil:
        def __reduce__(self):
            return (exec, (f"open({str(canary)!r}, 'w').write('ran')",))

    class EvilSystem:
        def __reduce__(self):
            return (os.system, (f"touch {canary}",))

    import pickle

    return pickle.dumps({b"data": Evil(), b"labels": EvilSystem()}, protocol=2)


def batches_folder(root: Path, first: bytes) -> Path:
    """A cifar-10-batches-py folder whose data_batch_1 is `first` (the rest are never reached)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        (folder / name).write_bytes(first)
    return folder


def batches_archive(root: Path, first: bytes, cut: int | None = None) -> Path:
    import tarfile

    folder = batches_folder(root / "unpacked", first)
    archive = root / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    if cut:
        archive.write_bytes(archive.read_bytes()[:cut])
    return archive


def image_folder(root: Path, classes=("cat", "dog"), per_class: int = 12, test: bool = False) -> Path:
    x, _, _ = load_sample()
    for split in ("train", "test") if test else ("train",):
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                (root / split / name / f"{i}.png").write_bytes(helpers.image_bytes(x[(c * per_class + i) % len(x)]))
    return root


# ---- 26: pickled data sources run nothing

@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_26_a_pickle_with_reduce_is_refused_and_runs_nothing(tmp_path, capsys, kind):
    canary = tmp_path / "canary"
    blob = evil_pickle(canary)
    source = batches_folder(tmp_path, blob) if kind == "folder" else batches_archive(tmp_path, blob)
    runs_dir = tmp_path / "runs"
    code, _, err = cli(capsys, "train", "--preset", "tiny", "--data", source, "--runs-dir", runs_dir)
    assert code == 2 and "not a CIFAR-10 batch file" in one_sentence(err) and "nothing in it was run" in err
    code, _, err = cli(capsys, "evaluate", "default", "--data", source)
    assert code == 2 and "not a CIFAR-10 batch file" in one_sentence(err)
    assert not canary.exists() and not runs_dir.exists()


def test_26_the_evaluate_path_refuses_it_too(tmp_path):
    from cifar_core import data
    from cifar_core.evaluate import evaluate_model

    canary = tmp_path / "canary"
    source = batches_folder(tmp_path, evil_pickle(canary))
    with pytest.raises(data.DataError, match="not a CIFAR-10 batch file"):
        evaluate_model("default", source=str(source))
    assert not canary.exists()


def test_26_a_batch_naming_more_pixels_than_it_holds_is_refused(tmp_path, capsys):
    """NumPy's array reconstruction, which the batch files need, makes an array of any shape the file names, filled or
    not: a few hundred bytes could claim gigabytes."""
    import pickle

    from numpy._core.multiarray import _reconstruct

    class Unfilled:
        def __init__(self, shape, dtype):
            self.args = (np.ndarray, shape, np.dtype(dtype))

        def __reduce__(self):
            return (_reconstruct, self.args)

    blob = pickle.dumps({b"data": Unfilled((20_000, 3072), "u1"), b"labels": Unfilled((20_000,), "i8")}, protocol=2)
    assert len(blob) < 1000
    code, _, err = cli(capsys, "train", "--preset", "tiny", "--data", batches_folder(tmp_path, blob), "--runs-dir",
                       tmp_path / "runs")
    assert code == 2 and "its pixels are more than the file holds" in one_sentence(err)


def test_26_no_pickle_is_allowed_anywhere_in_the_engine():
    for path in (ROOT / "cifar_core").glob("*.py"):
        text = path.read_text()
        assert "allow_pickle=True" not in text and "pickle.load(" not in text and "pickle.loads(" not in text, path


# ---- 28: the server listens on loopback only

def test_28_the_server_listens_on_loopback_only():
    server = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]
    assert server["address"] == "127.0.0.1"
    readme = (ROOT / "README.md").read_text()
    assert "st.login" in readme and "OIDC" in readme and "reverse proxy" in readme


# ---- 29: user text is text in charts, never markup

def test_29_run_and_class_names_are_escaped_in_every_chart():
    from cifar_core import charts

    record = {"kind": "epoch", "epoch": 1, "step": 1, "time": 1.0, "val_accuracy": 0.5}
    evil_class = "<a href=x>cat"
    figures = [
        charts.overlay_curves({EVIL_RUN_NAME: [record]}),
        charts.clickable_cells(charts.confusion_heatmap([[1, 0], [0, 1]], [evil_class, "<b>dog"]), [[1, 0], [0, 1]],
                               [evil_class, "<b>dog"]),
        charts.top_k_bar([{"label": evil_class, "probability": 0.9}]),
        charts.per_class_bars([{"class": evil_class, "precision": 1.0, "recall": 1.0, "f1": 1.0}]),
    ]
    for fig in figures:
        text = fig.to_json()
        assert "<a" not in text and "<b>" not in text and "\\u003ca" not in text.lower(), text[:300]
    assert figures[0].data[0].name == '&lt;a href="https://evil.example"&gt;log in&lt;/a&gt;'
    assert list(figures[1].data[0].x)[0] == list(figures[1].data[1].y)[0] == "&lt;a href=x&gt;cat"
    assert charts.plain(charts.escape(evil_class)) == evil_class


# ---- 30: train --run-dir DIR without --resume touches nothing in DIR

def test_30_train_into_a_folder_that_holds_files_is_refused_untouched(tmp_path, trained_runs, capsys):
    folder = tmp_path / "thesis"
    (folder / "backup").mkdir(parents=True)
    (folder / "backup" / "thesis.docx").write_bytes(b"years of work")
    (folder / "metrics.jsonl").write_text('{"kind": "epoch", "epoch": 1, "step": 1, "time": 1}\n')
    (folder / "model.keras").write_bytes(b"a model")
    finished = copy_run(trained_runs, tmp_path / "runs")
    for target in (folder, finished):
        before = tree_digest(target)
        code, out, err = cli(capsys, "train", "--preset", "tiny", "--data", "sample", "--run-dir", target)
        sentence = one_sentence(err)
        assert code == 2 and "--resume" in sentence and "nothing in it was touched" in sentence, err
        assert tree_digest(target) == before


# ---- 31: a torn backup falls back; every epoch once; a job dead in native code is interrupted; a full disk

def torn_first_epoch_backup(trained_runs, root: Path, epochs: int = 2) -> Path:
    """The tiny run killed while its first epoch's backup was written: latest.weights.h5 half written, no
    metadata and no older checkpoint; status still says running (the job died without a word)."""
    run = copy_run(trained_runs, root)
    backup = run / "backup"
    weights = (backup / "latest.weights.h5").read_bytes()
    for p in backup.iterdir():
        p.unlink()
    (backup / "latest.weights.h5").write_bytes(weights[:len(weights) // 2])
    config = runs.read_json(run / "config.json")
    config["train"]["epochs"] = epochs
    runs.write_json(run / "config.json", config)
    runs.write_json(run / "status.json", {"state": "running", "epoch": 1, "epochs": epochs, "pid": 2**22 + 7,
                                          "updated": time.time()})
    return run


def test_31_a_job_dead_in_native_code_reads_interrupted(trained_runs, tmp_path):
    run = torn_first_epoch_backup(trained_runs, tmp_path / "runs")
    assert runs.read_status(run)["state"] == "interrupted"  # its lock is free and its pid gone
    assert runs.summarize(run)["state"] == "interrupted"


def test_31_a_torn_first_epoch_backup_resumes_from_a_fresh_start(trained_runs, tmp_path):
    run = torn_first_epoch_backup(trained_runs, tmp_path / "runs")
    spec, config = runs.read_spec_and_config(run)
    log = helpers.train_in_process(spec, config, run, resume=True)
    assert any("backup" in line and "epoch 1" in line for line in log), log
    assert [r["epoch"] for r in metrics.epoch_records(run)] == [1, 2]
    assert runs.read_status(run)["state"] == "finished"


def test_31_torn_weights_with_metadata_fall_back_to_the_previous_checkpoint(tmp_path):
    backup = tmp_path / "backup"
    backup.mkdir()
    import h5py

    with h5py.File(backup / "latest.weights.h5.bkp", "w") as f:
        f["w"] = np.ones(3)
    good = (backup / "latest.weights.h5.bkp").read_bytes()
    (backup / "latest.weights.h5").write_bytes(good[:len(good) // 2])
    runs.write_json(backup / "training_metadata.json", {"epoch": 3, "batch": -1})
    runs.write_json(backup / "training_metadata.json.bkp", {"epoch": 2, "batch": -1})
    epoch, note = C.restore_backup_metadata(backup)
    assert epoch == 2 and "previous checkpoint (epoch 2)" in note
    assert (backup / "latest.weights.h5").read_bytes() == good
    (backup / "latest.weights.h5").write_bytes(b"torn")  # and no older copy (it became the latest): a fresh start
    epoch, note = C.restore_backup_metadata(backup)
    assert epoch == 0 and "epoch 1" in note and not list(backup.iterdir())


def test_31_a_full_disk_in_kerass_backup_write_is_the_disk_full_sentence(tmp_path):
    error = RuntimeError("Unable to synchronously write data (file write failed: time = ..., filename = "
                         "'latest.weights.h5', file descriptor = 5, errno = 28, error message = 'No space left on "
                         "device', buf = 0x1, total write size = 8)")
    from cifar_core import files

    assert files.is_disk_full(error)

    class Model:
        def save_weights(self, filepath, overwrite=True):
            raise error

    class Logger:
        stopped = False

    backup = C.make_backup(tmp_path / "backup", Logger())
    backup.set_model(Model())
    with pytest.raises(files.DiskFullError, match="The disk is full"):
        backup._save_model()


# ---- 32: evaluating the shipped model writes nothing into the package

def test_32_evaluating_the_shipped_model_leaves_the_package_unchanged(tmp_path):
    assets = ROOT / "cifar_core" / "assets"
    before = tree_digest(assets)
    folder = image_folder(tmp_path / "images", classes=CIFAR10_CLASSES, per_class=2)
    env = helpers.cli_env(CIFAR_CORE_CACHE=str(tmp_path / "cache"))
    for source in ("sample", folder):
        done = helpers.run_cli("evaluate", "default", "--data", source, "--json", env=env)
        assert done.returncode == 0, done.stderr
    assert tree_digest(assets) == before
    status = subprocess.run(["git", "status", "--porcelain", "--", "cifar_core/assets"], cwd=ROOT,
                            capture_output=True, text=True)
    assert status.returncode != 0 or status.stdout == ""
    (stored,) = (tmp_path / "cache" / "evaluations").glob("*.json")
    assert f"{folder}:val" in json.loads(stored.read_text())


# ---- 33: leftovers, Stop right after Start, the standby's parent, Ctrl-C

def test_33_a_save_killed_mid_write_leaves_nothing_at_the_next_start(trained_runs, tmp_path):
    run = copy_run(trained_runs, tmp_path / "runs")
    leftover = run / ".model.keras.4242-deadbeef.tmp.keras"
    leftover.write_bytes(b"half a model")
    runs.write_status(run, state="stopped")
    runs.request_stop(run)  # stop again at once: only the start-up (and its clearing) runs
    spec, config = runs.read_spec_and_config(run)
    log = helpers.train_in_process(spec, config, run, resume=True)
    assert "Stopped before the first step." in log and not leftover.exists()


def test_33_stop_pressed_right_after_start_is_honoured(app_env):
    run_id = jobs.start_job(TINY, helpers.tiny_config(epochs=30))
    time.sleep(0.1)
    state = jobs.stop_job(run_id, wait_s=120)
    run = runs.run_path(run_id)
    assert state == "stopped", runs.read_job_log(run_id)
    assert metrics.epoch_records(run) == [] and not runs.is_locked(run)


def test_33_the_standby_exits_when_the_server_that_started_it_is_gone(tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    # A shell plays the server: it starts the standby with itself as parent and exits at once.
    shell = subprocess.run(["sh", "-c", f'"{sys.executable}" -m cifar_core standby --runs-dir "{runs_dir}" '
                                        '--parent $$ >/dev/null 2>&1 & echo $!'],
                           cwd=ROOT, env=helpers.cli_env(), capture_output=True, text=True, timeout=30)
    pid = int(shell.stdout.strip())

    def gone():
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    helpers.wait_for(gone, timeout=90)  # it imports TensorFlow first (the standby's purpose), then notices


def test_33_ctrl_c_in_the_cli_stops_saves_and_says_how_to_resume(tmp_path):
    run = tmp_path / "run"
    job = helpers.start_cli("train", "--preset", "tiny", "--data", "sample", "--limit", "300", "--epochs", "200",
                            "--run-dir", run)
    helpers.wait_for(lambda: metrics.epoch_records(run), timeout=180, process=job)
    job.send_signal(signal.SIGINT)
    out, err = job.communicate(timeout=120)
    assert job.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in out + err
    assert [line for line in out.splitlines() if "Resume with:" in line] == [
        f"Stopped; the last whole epoch's model is kept. Resume with: python -m cifar_core train --run-dir {run} "
        "--resume"]
    assert runs.read_status(run)["state"] == "stopped" and (run / "model.keras").is_file()
    models.load_model(run / "model.keras")


# ---- 34: one malformed run file breaks nothing

BAD_RUNS = {
    "bad-config-list": {"config.json": "[1]"},
    "bad-train-null": {"config.json": lambda good: {**good, "train": None}},
    "bad-epoch-no-time": {"metrics.jsonl": '{"kind": "epoch", "epoch": 1, "step": 5, "val_accuracy": 0.3}\n'},
    "bad-updated": {"status.json": '{"state": "running", "updated": "yesterday", "epoch": "two"}'},
    "bad-val-high": {"metrics.jsonl": '{"kind": "epoch", "epoch": 1, "step": 5, "time": 1, "val_accuracy": "high"}\n'},
    "bad-batch-no-step": {"metrics.jsonl": '{"kind": "batch", "epoch": 1, "loss": 2.0}\n'},
    "bad-model-garbage": {"model.keras": b"PK\x03\x04 not a zip at all"},
}


@pytest.fixture
def bad_runs(runs_with_model) -> Path:
    good = runs.read_json(runs_with_model / TINY_RUN_ID / "config.json")
    for run_id, bad in BAD_RUNS.items():
        run = shutil.copytree(runs_with_model / TINY_RUN_ID, runs_with_model / f"20260102-000000-{run_id}")
        for name, content in bad.items():
            content = content(good) if callable(content) else content
            content = json.dumps(content) if isinstance(content, dict) else content
            (run / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return runs_with_model


def test_34_malformed_run_files_are_listed_with_their_reason(bad_runs, capsys):
    rows = {r["run_id"].split("-", 2)[-1]: r for r in runs.list_runs()}
    assert len(rows) == len(BAD_RUNS) + 1
    assert rows["bad-config-list"]["state"] == "unreadable" and "not a JSON object" in rows["bad-config-list"][
        "problem"]
    assert rows["bad-train-null"]["state"] == "unreadable" and "train" in rows["bad-train-null"]["problem"]
    assert rows["bad-epoch-no-time"]["train_time_s"] is None and rows["bad-epoch-no-time"]["epochs_done"] == 1
    assert rows["bad-updated"]["state"] == "interrupted"
    assert rows["bad-val-high"]["best_val_accuracy"] is None
    code, out, err = cli(capsys, "runs")
    assert code == 0 and err == "" and "not a JSON object" in out
    with pytest.raises(ValueError, match="not a Keras model file"):
        models.load_model(runs.run_path(rows["bad-model-garbage"]["run_id"]) / "model.keras")


@pytest.mark.parametrize("page", ["pages/runs.py", "pages/train.py", "pages/classify.py", "pages/evaluate.py",
                                  "pages/home.py"])
def test_34_every_page_works_beside_malformed_runs(bad_runs, open_app, page):
    at = open_app(page)
    assert not at.exception, at.exception
    if page == "pages/runs.py":
        problems = [r["problem"] for r in at.dataframe[0].value.to_dict("records")]
        assert sum(bool(p) for p in problems) == 2


@pytest.mark.parametrize("page, key", [("pages/classify.py", "cls_model"), ("pages/evaluate.py", "eval_model")])
def test_34_a_garbage_model_file_is_a_sentence_on_the_pages(bad_runs, open_app, page, key):
    at = open_app(page, **{key: "20260102-000000-bad-model-garbage"})
    if page == "pages/evaluate.py":
        at.button(key="eval_go").click().run()
    assert not at.exception
    shown = " ".join(e.value for e in at.error).replace("\\", "")
    assert "not a Keras model file" in shown and "File not found" not in shown, shown


def test_34_an_unreadable_run_can_be_deleted_on_the_runs_page(bad_runs, open_app):
    run_id = "20260102-000000-bad-config-list"
    at = open_app("pages/runs.py")
    manage = next(s for s in at.selectbox if s.key.startswith("runs_manage"))
    manage.set_value(run_id).run()
    assert any("cannot be used" in w.value for w in at.warning)
    at.checkbox(key=f"runs_confirm_{run_id}").check().run()
    at.button(key="delete").click().run()
    assert not at.exception and not (bad_runs / run_id).exists()


# ---- 35: data-source errors are one sentence before any run folder exists

def data_source_cases(root: Path) -> dict:
    import pickle

    loop_image = image_folder(root / "loop-image")
    os.symlink("self.png", loop_image / "train" / "cat" / "self.png")
    loop_class = image_folder(root / "loop-class")
    os.symlink("bird", loop_class / "train" / "bird")
    empty_test = image_folder(root / "empty-test")
    for name in ("cat", "dog"):
        (empty_test / "test" / name).mkdir(parents=True)
    wrong = pickle.dumps({b"data": [1, 2, 3], b"labels": [0]}, protocol=2)
    return {"loop-image": (loop_image, "self.png"), "loop-class": (loop_class, "bird"),
            "truncated": (batches_archive(root / "tgz", wrong, cut=200), "truncated"),
            "wrong-structure": (batches_folder(root / "batches", wrong), "not a CIFAR-10 batch file"),
            "empty-test": (empty_test, "hold no images"), "missing": (root / "no-such-data", "does not exist")}


def test_35_data_source_errors_are_one_sentence_before_any_run_folder(tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    for case, (source, words) in data_source_cases(tmp_path / "data").items():
        code, _, err = cli(capsys, "train", "--preset", "tiny", "--data", source, "--runs-dir", runs_dir)
        assert code == 2 and words in one_sentence(err), (case, err)
        assert not runs_dir.exists() or not list(runs_dir.iterdir()), case


# ---- 36: the decode cache

def test_36_a_torn_or_empty_cache_is_rebuilt(tmp_path, monkeypatch):
    from cifar_core import data

    monkeypatch.setenv("CIFAR_CORE_CACHE", str(tmp_path / "cache"))
    folder = image_folder(tmp_path / "images")
    first = data.load_data(str(folder))
    (cached,) = (tmp_path / "cache").glob("folder-*.npz")
    for torn in (cached.read_bytes()[:1000], b""):
        cached.write_bytes(torn)
        again = data.load_data(str(folder))
        assert np.array_equal(again.x_train, first.x_train) and cached.stat().st_size > 1000


def test_36_three_processes_making_the_first_load_at_once(tmp_path):
    folder = image_folder(tmp_path / "images", per_class=40)
    code = ("import sys; from cifar_core import data; d = data.load_data(sys.argv[1]); "
            "print(len(d.x_train), int(d.x_train.sum()))")
    env = helpers.cli_env(CIFAR_CORE_CACHE=str(tmp_path / "cache"))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(folder)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], results
    assert len({out for out, _ in results}) == 1
    assert len(list((tmp_path / "cache").glob("folder-*.npz"))) == 1
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]


def test_36_a_read_only_cache_folder_means_loading_without_one(tmp_path, monkeypatch, read_only):
    from cifar_core import data

    cache = tmp_path / "cache"
    cache.mkdir()
    read_only(cache)
    monkeypatch.setenv("CIFAR_CORE_CACHE", str(cache))
    dataset = data.load_data(str(image_folder(tmp_path / "images")))
    assert len(dataset.x_train) + len(dataset.x_val) == 24 and not list(cache.glob("folder-*"))


# ---- 37: bounded work for bounded input

def conv_stack(count: int) -> dict:
    layers = [{"type": "Conv2D", "filters": 4, "kernel_size": 3, "padding": "same"}] * (count - 1)
    return {"name": "tall", "layers": [*layers, {"type": "GlobalAveragePooling2D"}]}


@pytest.mark.parametrize("text, words", [
    ('{"name": "x", "layers": [{"type": ["Conv2D"]}]}', "unknown layer type ['Conv2D']"),
    ('{"name": "x", "layers": [' + "[" * 5000 + "]" * 5000 + "]}", "nests more than"),
    ('{"name": "x", "num_classes": 1' + "0" * 5000 + ', "layers": []}', "more than 100 digits"),
    (json.dumps(conv_stack(S.MAX_LAYERS + 1)), f"{S.MAX_LAYERS + 1} layers; the limit is {S.MAX_LAYERS}"),
    (json.dumps(conv_stack(2500)), "the limit is"),
    ('{"name": "x", "name": "y", "layers": []}', "appears twice"),
    ('{"name": "x", "layers": [], "logit_scale": NaN}', "not a JSON number"),
])
def test_37_spec_json_is_bounded_and_its_types_checked(text, words):
    started = time.perf_counter()
    with pytest.raises(S.SpecError, match=None) as refused:
        spec_io.from_json(text)
    assert words in str(refused.value) and time.perf_counter() - started < 1.0
    assert shapes.validate(spec_io.from_json(json.dumps(conv_stack(S.MAX_LAYERS)))).layers  # the largest allowed spec


@pytest.mark.parametrize("content", ["[1, 2]", "null", '"epochs"', '{"epochs": 2, "epochs": 3}'])
def test_37_a_config_file_that_is_not_an_object_is_a_sentence(tmp_path, capsys, content):
    config = tmp_path / "config.json"
    config.write_text(content)
    code, _, err = cli(capsys, "train", "--preset", "tiny", "--config", config, "--runs-dir", tmp_path / "runs")
    assert code == 2 and one_sentence(err).startswith("error: ") and not (tmp_path / "runs").exists()


def test_37_the_build_page_answers_an_edit_of_the_largest_spec_quickly(open_app):
    at = open_app("pages/build.py", spec=spec_io.from_dict(conv_stack(S.MAX_LAYERS)))
    assert not at.exception
    at.number_input(key="layer_0_filters").set_value(8)
    started = time.perf_counter()
    at.run()
    assert not at.exception and at.session_state["spec"].layers[0].filters == 8
    # 2.5-2.7 s on the plain AVX2 machine of 2026-12-02, the slowest yet; a loaded 2-core machine: twice that
    assert time.perf_counter() - started < 4.0 * (1 + (os.getloadavg()[0] > 2))


def test_37_a_huge_metrics_file_is_listed_in_bounded_time_and_memory(trained_runs, tmp_path):
    import tracemalloc

    run = copy_run(trained_runs, tmp_path / "runs")
    line = b'{"kind": "batch", "epoch": 1, "step": 3, "time": 1.5, "loss": 2.25, "accuracy": 0.125}\n'
    with open(run / "metrics.jsonl", "ab") as f:
        for _ in range(60):
            f.write(line * (2**20 // len(line)))  # 60 MB of batch points
    tracemalloc.start()
    started = time.perf_counter()
    rows = runs.list_runs(tmp_path / "runs")
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # about 12 s under tracemalloc on the plain AVX2 machine of 2026-12-02, the slowest yet
    assert rows[0]["epochs_done"] == 1 and seconds < 25 and peak < 20 * 2**20, (seconds, peak)
    assert len(metrics.read_metrics(run)) <= metrics.MAX_BATCH_POINTS + 10
    started = time.perf_counter()
    runs.list_runs(tmp_path / "runs")  # cached by size and modification time
    assert time.perf_counter() - started < 0.5


def test_37_a_keras_zip_bomb_is_refused_before_unpacking(tmp_path):
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("config.json", "w", force_zip64=True) as member:
            chunk = b" " * 2**24
            for _ in range(64):  # 1 GiB of spaces, about 1 MB compressed
                member.write(chunk)
        archive.writestr("metadata.json", "{}")
    assert bomb.stat().st_size < 8 * 2**20
    started = time.perf_counter()
    with pytest.raises(ValueError, match="unpacks to 1,024 MB"):
        models.load_model(bomb)
    assert time.perf_counter() - started < 1.0


def test_37_a_2_gb_image_file_is_refused_by_its_size_unread(tmp_path):
    import tracemalloc

    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:
        f.write(sample_png())
        f.truncate(2 * 2**30)  # sparse: 2 GB long, a few kB on disk
    tracemalloc.start()
    with pytest.raises(images.ImageError, match="2048.0 MB; the limit is 10 MB"):
        images.read_image_file(huge)
    assert tracemalloc.get_traced_memory()[1] < 2**20
    tracemalloc.stop()


# ---- 38: file-system errors on pages are sentences

def test_38_rename_and_delete_in_a_read_only_runs_folder(runs_with_model, open_app, read_only):
    read_only(runs_with_model / TINY_RUN_ID)
    read_only(runs_with_model)
    at = open_app("pages/runs.py")
    at.text_input(key=f"runs_label_{TINY_RUN_ID}").input("new name")
    at.button(key="rename").click().run()
    assert not at.exception and "is read-only; the run cannot be renamed" in at.error[0].value.replace("\\", "")
    at.checkbox(key=f"runs_confirm_{TINY_RUN_ID}").check().run()
    at.button(key="delete").click().run()
    assert not at.exception and "could not be deleted" in at.error[0].value.replace("\\", "")
    assert (runs_with_model / TINY_RUN_ID / "model.keras").is_file()


def test_38_start_in_a_read_only_runs_folder(app_env, open_app, read_only):
    read_only(app_env)
    at = open_app("pages/train.py")
    at.button(key="start").click().run()
    message = at.error[0].value.replace("\\", "") if at.error else ""
    assert not at.exception and message == "The folder runs is read-only; no run can be started in it.", message


def test_38_deleting_a_run_whose_folder_is_a_symlink_removes_the_link_only(trained_runs, app_env, open_app):
    elsewhere = copy_run(trained_runs, app_env.parent / "elsewhere")
    (app_env / TINY_RUN_ID).symlink_to(elsewhere, target_is_directory=True)
    at = open_app("pages/runs.py")
    at.checkbox(key=f"runs_confirm_{TINY_RUN_ID}").check().run()
    at.button(key="delete").click().run()
    assert not at.exception and not (app_env / TINY_RUN_ID).exists()
    assert (elsewhere / "model.keras").is_file()


# ---- 39: validation gaps

@pytest.mark.parametrize("seed", ["-1", str(2**70)])
def test_39_a_seed_out_of_range_is_refused_before_a_folder(tmp_path, capsys, seed):
    code, _, err = cli(capsys, "train", "--preset", "tiny", "--data", "sample", "--seed", seed, "--runs-dir",
                       tmp_path / "runs")
    assert code == 2 and "seed" in one_sentence(err) and not (tmp_path / "runs").exists()


def test_39_an_input_shape_the_data_lacks_is_refused_before_a_folder(tmp_path, capsys):
    spec = tmp_path / "gray.json"
    spec.write_text(json.dumps({**spec_io.to_dict(TINY), "input_shape": [32, 32, 1]}))
    code, _, err = cli(capsys, "train", "--spec", spec, "--data", "sample", "--runs-dir", tmp_path / "runs")
    assert code == 2 and "input_shape (32, 32, 1) does not match" in one_sentence(err)
    assert not (tmp_path / "runs").exists()


def test_39_a_folder_of_1001_classes_names_its_class_count(tmp_path, capsys):
    png = sample_png(0, 1)
    for i in range(1001):
        (tmp_path / "many" / "train" / f"c{i:04d}").mkdir(parents=True)
        (tmp_path / "many" / "train" / f"c{i:04d}" / "a.png").write_bytes(png)
    code, _, err = cli(capsys, "train", "--preset", "tiny", "--data", tmp_path / "many", "--runs-dir",
                       tmp_path / "runs")
    assert code == 2 and "has 1,001 class folders" in one_sentence(err) and "num_classes" not in err


def test_39_duplicate_json_keys_are_refused(tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(spec_io.to_dict(TINY))[:-1] + ', "name": "again"}')
    code, _, err = cli(capsys, "train", "--spec", spec, "--data", "sample", "--runs-dir", tmp_path / "runs")
    assert code == 2 and "'name' appears twice" in one_sentence(err)


@pytest.mark.parametrize("args, words", [(["--opacity", "nan"], "--opacity must be a number from 0 to 1"),
                                         (["--opacity", "inf"], "--opacity must be a number from 0 to 1"),
                                         (["--out", "."], "--out must be a file name")])
def test_39_saliency_refuses_a_nan_opacity_and_a_folder_as_out(tmp_path, capsys, args, words):
    out = ["--out", str(tmp_path / "x.png")] if "--out" not in args else []
    code, _, err = cli(capsys, "saliency", "default", sample_path_png(tmp_path), *args, *out)
    assert code == 2 and words in one_sentence(err) and not (tmp_path / "x.png").exists()


def sample_path_png(root: Path) -> Path:
    path = root / "cat.png"
    path.write_bytes(sample_png())
    return path


def test_27_the_app_opens_only_sample_keras_and_datasets_in_the_data_roots(tmp_path, monkeypatch):
    from cifar_core import data

    root = tmp_path / "data"
    (root / "cats" / "train" / "cat").mkdir(parents=True)
    (root / "cats" / "train" / "dog").mkdir(parents=True)
    outside = tmp_path / "secret"
    (outside / "train" / "a").mkdir(parents=True)
    (root / "escape").symlink_to(outside)  # a symbolic link out of the root
    (root / "loop").symlink_to(root / "loop")
    monkeypatch.setenv("CIFAR_DATA_ROOTS", str(root))
    monkeypatch.setattr(data, "can_download", lambda: False)
    offered = sources.app_sources()
    assert list(offered) == ["sample", "data/cats"]
    assert sources.app_source("data/cats") == str(root / "cats") and sources.app_source("sample") == "sample"
    refused = ["/etc", "/root/.ssh/id_rsa", "../secret", "data/../secret", "data/escape", "data/loop", str(outside),
               str(root / "cats"), "data/cats/../../secret", "data", "keras/..", ""]
    for choice in refused:
        with pytest.raises(data.DataError) as caught:
            sources.app_source(choice)
        assert str(caught.value) == ("That data source is not offered by this server; choose CIFAR-10, the sample "
                                     "or a dataset in the server's data folders.")
    # Nothing the app shows of a data source names a server path: labels, the default, the Home page's status.
    shown = [*offered, *offered.values(), sources.app_default(), sources.app_label(str(root / "cats")),
             sources.source_status("sample")[1], sources.source_status("keras")[1]]
    assert not [text for text in shown if "/" in text.replace("data/cats", "")]
    # With no setting, the root is ./data; an empty setting offers no folder at all.
    monkeypatch.delenv("CIFAR_DATA_ROOTS")
    assert sources.data_roots() == [Path("data").resolve()]
    monkeypatch.setenv("CIFAR_DATA_ROOTS", "")
    assert sources.data_roots() == [] and list(sources.app_sources()) == ["sample"]



# ---------------------------------------------------------------------------------------------------------------
# 40-45: hostile files beyond JSON


def _finishes(call, seconds: float = 20.0):
    """call's result (or its exception, raised here), asserting it ends within `seconds` (run in a daemon thread, so
    a hang fails the test instead of stopping the suite)."""
    result = {}

    def run():
        try:
            result["value"] = call()
        except Exception as e:
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{call} did not return within {seconds} s"
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.mark.parametrize("name", ["config.json", "status.json", "label.json", "metrics.jsonl", "job.log",
                                  "eval.json"])
@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_40_a_pipe_or_a_device_as_a_run_file_neither_hangs_nor_fills_memory(runs_with_model, capsys, name, kind):
    from cifar_core import evaluate

    run = runs_with_model / TINY_RUN_ID
    (run / name).unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(run / name)
    else:
        (run / name).symlink_to("/dev/zero")
    listed = _finishes(lambda: {r["run_id"]: r for r in runs.list_runs()})
    assert TINY_RUN_ID in listed
    _finishes(lambda: (metrics.read_metrics(run), runs.read_job_log(TINY_RUN_ID),
                       evaluate.load_eval(run, "sample", "val")))
    code, out, err = _finishes(lambda: cli(capsys, "runs"))
    assert code == 0 and "Traceback" not in err


def test_41_a_hostile_eval_json_is_evaluated_again_not_shown(runs_with_model):
    from cifar_core import evaluate

    run = runs_with_model / TINY_RUN_ID
    evaluate.evaluate_model(TINY_RUN_ID, "val", "sample")
    (path,) = [p for p in evaluate.eval_paths(run) if p.exists()]
    stored = json.loads(path.read_text())
    good = stored["sample:val"]
    assert evaluate.load_eval(run, "sample", "val") == good
    n, k = good["n"], len(good["class_names"])
    hostile = {
        "a string loss": {"loss": "1.0"}, "no top-3 accuracy": {"top3_accuracy": None},
        "accuracy above 1": {"accuracy": 1.5}, "a NaN-like confidence": {"predictions": {
            **good["predictions"], "confidence": ["0.9"] * n}},
        "a class index out of range": {"predictions": {**good["predictions"], "pred": [k] * n}},
        "a negative class index": {"predictions": {**good["predictions"], "true": [-1] * n}},
        "a confusion matrix of strings": {"confusion_matrix": [["1"] * k] * k},
        "a confusion matrix that does not count n": {"confusion_matrix": [[0] * k] * k},
        "per-class rows as strings": {"per_class": ["x"] * k},
        "another data source": {"source": "/etc"},
        "another split": {"split": "test"},
        "a class name of 10,000 characters": {"class_names": ["x" * 10_000] * k},
    }
    for why, change in hostile.items():
        path.write_text(json.dumps({"sample:val": {**good, **change}}))
        assert evaluate.load_eval(run, "sample", "val") is None, why
    path.write_text(json.dumps({"sample:val": {**good, "source": "/etc"}}))
    again = evaluate.evaluate_model(TINY_RUN_ID, "val", "sample")  # evaluated anew, its own source
    assert again["source"] == "sample" and again["accuracy"] == good["accuracy"]


def test_42_a_batch_file_of_references_to_one_image_is_refused_before_any_copy(tmp_path, capsys):
    import pickle
    import tracemalloc

    from cifar_core import readers

    image = bytes(3072)
    blob = pickle.dumps({b"data": [image] * 50_000, b"labels": [0] * 50_000}, protocol=2)  # memo references
    assert len(blob) < 400_000
    tracemalloc.start()
    with pytest.raises(readers.DataError, match="not a CIFAR-10 batch file .its pixels are not an array"):
        readers._unpickle_batch(blob)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 2**20, peak  # np.asarray would have copied 150 MB
    labels = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, protocol=2)
    with pytest.raises(readers.DataError, match="labels are not one class from 0 to 9"):
        readers._unpickle_batch(labels)


def test_43_a_decode_cache_naming_a_huge_array_or_compressed_is_rebuilt(tmp_path, monkeypatch):
    from cifar_core import data

    monkeypatch.setenv("CIFAR_CORE_CACHE", str(tmp_path / "cache"))
    folder = image_folder(tmp_path / "images")
    first = data.load_data(str(folder))
    (cached,) = (tmp_path / "cache").glob("folder-*.npz")
    count = len(first.x_train) + len(first.x_val)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (10**8, 32, 32, 3)})
    with zipfile.ZipFile(cached, "w") as archive:  # 300 GB named, a few bytes held
        archive.writestr("x.npy", header.getvalue() + bytes(100))
        archive.writestr("y.npy", b"")
    assert data.load_data(str(folder)).x_train.shape == first.x_train.shape
    x, y = np.zeros((count, 32, 32, 3), np.uint8), np.zeros(count, np.int64)
    np.savez_compressed(cached, x=x, y=y)  # the right header, but deflated: a small file could inflate to GBs
    assert np.array_equal(data.load_data(str(folder)).x_train, first.x_train)


def test_44_a_small_model_file_naming_a_billion_weights_is_refused_before_they_are_made(trained_runs, tmp_path):
    source = trained_runs / TINY_RUN_ID / "model.keras"
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    conv = next(layer for layer in config["config"]["layers"] if layer["class_name"].endswith("Conv2D"))
    conv["config"]["filters"] = 40_000_000  # 3 x 3 x 3 x 40 M: a billion weights, 4 GB
    members["config.json"] = json.dumps(config).encode()
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    assert bomb.stat().st_size < 200_000
    started = time.perf_counter()
    with pytest.raises(ValueError, match="past 50,000,000 weights.*refused before they are made"):
        models.load_model(bomb)
    assert time.perf_counter() - started < 30  # Keras would have initialised 4 GB of weights first
    copy = shutil.copy2(source, tmp_path / "copy.keras")  # a path not loaded before: a real load, same thread
    assert models.load_model(copy).count_params() == models.load_model(source).count_params() > 0


def test_45_uploads_that_would_cost_memory_beyond_their_pixels():
    import struct
    import tracemalloc
    import zlib

    def png_chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    # 1 x 30,000,000 greyscale: 30 MB of pixels, but Pillow keeps a pointer a row (0.36 GB in all). Its header is
    # enough: the refusal comes before any pixel is decoded.
    thin = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 30_000_000, 8, 0, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(b"\x00\x00" * 1000)) + png_chunk(b"IEND", b""))
    with pytest.raises(images.ImageError, match="1x30000000 pixels, too long and thin to open safely"):
        images.read_input(thin)
    assert 6000 * (8 + 4 * 8000) < images.MAX_DECODED_BYTES  # a 48-megapixel photo still opens
    grey = np.tile(np.arange(0, 65536, 16, dtype=np.uint16), (3000, 1))[:, :3000]  # 18 MB of 16-bit pixels
    tracemalloc.start()
    array, _ = images.read_input(helpers.image_bytes(grey))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 45 * 2**20, peak  # float64 at full size: 72 MB and its temporaries
    assert array.shape == (32, 32, 3) and array[0, 0, 0] < 5 and array[0, -1, 0] > 145  # scaled, not clipped


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_47_a_pipe_or_a_device_as_a_batch_file_is_refused_at_once(tmp_path, kind):
    from cifar_core import data

    folder = batches_folder(tmp_path, b"")
    (folder / "data_batch_1").unlink()
    if kind == "fifo":
        os.mkfifo(folder / "data_batch_1")
    else:
        (folder / "data_batch_1").symlink_to("/dev/zero")
    with pytest.raises(data.DataError, match="not a complete cifar-10-batches-py folder .data_batch_1"):
        _finishes(lambda: data.load_data(str(folder)), 10)


def test_47_an_archive_of_many_members_is_read_only_as_far_as_the_batches_can_be(tmp_path):
    import tarfile

    from cifar_core import data, readers

    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for i in range(5000):  # getmember would index them all first (1.5 million: 0.7 GB, a minute)
            tar.addfile(tarfile.TarInfo(f"cifar-10-batches-py/padding_{i}"))
    started = time.perf_counter()
    with pytest.raises(data.DataError, match=f"has no data_batch_1 among its first {readers.MAX_ARCHIVE_MEMBERS}"):
        data.load_data(str(archive))
    assert time.perf_counter() - started < 2


def test_47_a_link_out_of_a_dataset_is_refused_and_one_inside_it_is_followed(tmp_path, monkeypatch):
    from cifar_core import data

    monkeypatch.setenv("CIFAR_CORE_CACHE", str(tmp_path / "cache"))
    folder = image_folder(tmp_path / "ds")
    outside = image_folder(tmp_path / "private", classes=("secret", "other"))
    (folder / "train" / "cat" / "inside.png").symlink_to(folder / "train" / "dog" / "0.png")  # stays inside
    assert len(data.load_data(str(folder)).x_train) + len(data.load_data(str(folder)).x_val) == 25
    for link, target in (("train/secret", outside / "train" / "secret"),
                         ("train/cat/zz.png", outside / "train" / "secret" / "0.png")):
        (folder / link).symlink_to(target)
        with pytest.raises(data.DataError, match=f"holds a link that leads out of it .{link.split('/', 1)[1]}"):
            data.load_data(str(folder))
        (folder / link).unlink()
    (folder / "train").rename(folder / "real")
    (folder / "train").symlink_to(outside / "train")  # the split folder itself leads out
    with pytest.raises(data.DataError, match="train is a link that leads out of the dataset"):
        data.load_data(str(folder))


def test_47_a_page_resumes_or_starts_only_runs_on_a_source_it_offers(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_DATA_ROOTS", str(tmp_path / "data"))
    outside = image_folder(tmp_path / "outside")
    for run_id, state in (("20260101-000000-stopped", "stopped"), ("20260101-000001-queued", "queued")):
        preset = get_preset("tiny")
        run = runs.create_run(tmp_path / "runs" / run_id, preset.spec, dataclasses.replace(preset.train,
                                                                                          data=str(outside)))
        runs.write_status(run, state=state, queued_at=1.0)
    assert not sources.offered(str(outside)) and sources.offered("sample")
    with pytest.raises(runs.RunError, match="data source is not offered by this server"):
        jobs.resume_job("20260101-000000-stopped", tmp_path / "runs", offered=sources.offered)
    assert jobs.start_next(tmp_path / "runs", offered=sources.offered) == []
    status = runs.read_status(tmp_path / "runs" / "20260101-000001-queued")
    assert status["state"] == "failed" and "not offered by this server" in status["error"]


# ---- 48: a third attack

def _peak_mb(code: str, *args: str) -> int:
    """The peak memory a fresh process adds running code (VmHWM, after its imports), in MB."""
    child = ("import sys\nfrom cifar_core import images\n"
             "def hwm():\n    return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))"
             ".split()[1]) // 1024\nbase = hwm()\n" + code + "\nprint(hwm() - base)\n")
    out = subprocess.run([sys.executable, "-c", child, *args], capture_output=True, text=True, cwd=ROOT, check=True)
    return int(out.stdout.split()[-1])


def test_48_a_jpeg_of_thousands_of_scans_is_refused_before_decoding():
    from PIL import Image

    photo = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(photo, "JPEG", progressive=True)
    data = photo.getvalue()
    assert 1 < data.count(b"\xff\xda") <= images.MAX_JPEG_SCANS and images.read_input(data)[0].shape == (32, 32, 3)
    sos = data.index(b"\xff\xda")
    end = data.index(b"\xff\xd9")  # each copy of the last scan is one more pass of the decoder over the image
    last = data.rindex(b"\xff\xda")
    bomb = data[:end] + data[last:end] * 2000 + data[end:]
    assert sos < last
    started = time.perf_counter()
    with pytest.raises(images.ImageError, match=r"The JPEG has 2,0\d\d scans where a photo has about 10"):
        images.read_input(bomb)
    assert time.perf_counter() - started < 0.5


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM")
def test_48_palette_and_webp_images_cost_about_their_pixels_or_are_refused(tmp_path):
    from PIL import Image

    palette = tmp_path / "p.png"  # 6 kB; converted whole, RGBA + background + composite took 609 MB
    Image.new("P", (7000, 7000), 0).save(palette, transparency=0)
    assert _peak_mb("images.read_input(open(sys.argv[1], 'rb').read())", str(palette)) < 120
    small = Image.new("P", (1000, 1000), 1)
    small.putpalette([255, 255, 255, 200, 30, 30] + [0] * 762)
    small.paste(0, (0, 0, 500, 1000))  # the left half transparent (index 0), the right half red
    shown = images.read_input(helpers.image_bytes(small, transparency=0))[0]
    assert tuple(shown[16, 2]) == (255, 255, 255) and tuple(shown[16, 29]) == (200, 30, 30)  # on white, unblurred
    webp = io.BytesIO()
    Image.new("RGBA", (7000, 7000), (3, 100, 3, 100)).save(webp, "WEBP", lossless=True)  # 2 kB, had taken 751 MB
    with pytest.raises(images.ImageError, match="7000x7000 pixels, too large as WEBP to open safely"):
        images.read_input(webp.getvalue())


def test_48_names_that_are_not_utf8_are_left_out_refused_or_escaped(tmp_path, monkeypatch):
    import ui
    from cifar_core import data, files

    monkeypatch.setenv("CIFAR_CORE_CACHE", str(tmp_path / "cache"))
    roots = tmp_path / "roots"
    image_folder(roots / "good")
    image_folder(Path(os.fsdecode(bytes(roots) + b"/bad\xff")))
    monkeypatch.setenv("CIFAR_DATA_ROOTS", str(roots))
    assert sorted(sources._root_sources()) == ["roots/good"]  # the other name took every page down
    folder = image_folder(tmp_path / "ds")
    (folder / "train" / "cat" / "0.png").rename(Path(os.fsdecode(bytes(folder / "train" / "cat") + b"/x\xff.png")))
    assert len(data.load_data(str(folder)).x_train) > 0  # a file's name is only read, never shown
    Path(os.fsdecode(bytes(folder / "train") + b"/d\xf6g")).mkdir()
    with pytest.raises(data.DataError, match=r"The class folder d\\udcf6g in train is not named in UTF-8"):
        data.load_data(str(folder))
    with pytest.raises(files.JSONFileError, match="lone surrogate"):
        files.parse_json('{"name": "x\\ud800"}')
    with pytest.raises(runs.RunError, match=r"caf\\udce9 is not UTF-8 text"):
        runs.check_run_name(os.fsdecode(b"caf\xe9"))
    assert ui.md_escape(os.fsdecode(b"x\xff.png")) == "x\\\\udcff\\.png"


def test_48_out_that_is_a_device_or_a_link_is_left_as_it_is(tmp_path):
    from cifar_core import files

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file, so nothing was written over it"):
        files.write_atomic(fifo, b"png")
    assert fifo.is_fifo()
    kept = tmp_path / "kept.png"
    kept.write_text("keep")
    (tmp_path / "link.png").symlink_to(kept)
    out = helpers.run_cli("saliency", TINY_RUN_ID, str(tmp_path / "x.png"), "--out", str(tmp_path / "link.png"))
    assert out.returncode == 2 and "--out is a symbolic link" in out.stderr and kept.read_text() == "keep"


def test_48_a_model_file_of_another_network_is_refused_in_one_sentence(tmp_path):
    import keras

    layers = keras.layers
    x = keras.Input((32, 32, 3))
    pooled = layers.GlobalMaxPooling2D()(layers.Conv2D(4, 3)(x))
    cases = {
        "mnist": (keras.Sequential([keras.Input((28, 28, 1)), layers.Flatten(), layers.Dense(10)]),
                  r"it takes \(None, 28, 28, 1\), where this tool's images are \(None, 32, 32, 3\)"),
        "map": (keras.Sequential([keras.Input((32, 32, 3)), layers.Conv2D(4, 3)]), r"it gives \(None, 30, 30, 4\)"),
        "two": (keras.Model(x, [layers.Dense(10)(pooled), layers.Dense(3)(pooled)]), r"\(None, 10\), \(None, 3\)"),
        "bomb": (keras.Sequential([keras.Input((32, 32, 3)), layers.UpSampling2D(400), layers.GlobalMaxPooling2D(),
                                   layers.Dense(10)]), "outputs take 1.8 GB for one image; the limit is 1 GB"),
    }
    for name, (model, message) in cases.items():
        model.save(tmp_path / f"{name}.keras")
        with pytest.raises(ValueError, match=f"cannot be loaded safely: .*{message}"):
            models.load_model(tmp_path / f"{name}.keras")


def test_48_a_pipe_as_spec_and_an_sqlite_url_of_no_file_are_sentences(tmp_path):
    from cifar_core import flags, studies

    os.mkfifo(tmp_path / "spec.json")
    started = time.perf_counter()
    with pytest.raises(S.SpecError, match="--spec .* cannot be read .*not a regular file"):
        flags.read_text(str(tmp_path / "spec.json"), "--spec")
    assert time.perf_counter() - started < 2
    with pytest.raises(S.SpecError, match="sqlite:/// names no file"):
        studies.open_storage("sqlite:///")


# ---- 49: a fourth attack

def test_49_files_in_a_run_folder_are_never_written_through_a_link(tmp_path):
    """A run folder is anybody's to edit: its job.log, stop, lock and metrics.jsonl made links to another file had
    the job's output appended there, a file made where `stop` pointed, and (filelock opens with O_TRUNC) the other
    file emptied. files.open_for_append and files.touch refuse a link or a non-regular file."""
    from cifar_core import files, jobs

    run = runs.create_run(tmp_path / "run", TINY, helpers.tiny_config())
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    for name in ("job.log", "stop", "lock", "metrics.jsonl"):
        (run / name).unlink(missing_ok=True)
        (run / name).symlink_to(victim)
    with pytest.raises(OSError, match="job.log is a symbolic link"):
        jobs.spawn(["runs"], run / "job.log")
    with pytest.raises(OSError, match="stop is a symbolic link"):
        runs.request_stop(run)
    with pytest.raises(OSError, match="lock is a symbolic link"):
        locks.try_lock(run / "lock")
    with pytest.raises(OSError, match="metrics.jsonl is a symbolic link"):
        metrics.append_metrics(run, [{"kind": "epoch", "epoch": 1}])
    (run / "stop").unlink()
    (run / "stop").symlink_to(tmp_path / "made-through-stop")  # a dangling link: nothing may be made there
    with pytest.raises(OSError, match="stop is a symbolic link"):
        runs.request_stop(run)
    assert victim.read_text() == "precious\n" and not (tmp_path / "made-through-stop").exists()
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError):  # no reader: refused at once rather than blocking
        files.open_for_append(tmp_path / "fifo")


def test_49_an_mpo_jpeg_of_thousands_of_scans_and_a_large_run_length_bmp_are_refused_before_decoding():
    import struct

    from PIL import Image

    photo = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(photo, "JPEG", progressive=True)
    data = photo.getvalue()
    end, last = data.index(b"\xff\xd9"), data.rindex(b"\xff\xda")
    mpo = io.BytesIO()  # the APP2 multi-picture segment Pillow writes: with it, Pillow names the JPEG "MPO"
    Image.new("RGB", (8, 8)).save(mpo, "MPO", save_all=True, append_images=[Image.new("RGB", (8, 8))])
    app2 = mpo.getvalue()[mpo.getvalue().index(b"\xff\xe2"):]
    app2 = app2[:4 + int.from_bytes(app2[2:4], "big") - 2]
    bomb = b"\xff\xd8" + app2 + (data[:end] + data[last:end] * 2000 + data[end:])[2:]
    with Image.open(io.BytesIO(bomb)) as image:
        assert image.format == "MPO"
    with pytest.raises(images.ImageError, match=r"The JPEG has 2,0\d\d scans"):
        images.read_input(bomb)

    def rle8_bmp(side):  # every row one pixel, then end of line: 4 bytes a row, Pillow's Python decoder a step a byte
        rows = b"\x01\x07\x00\x00" * side + b"\x00\x01"
        palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
        info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 8, 1, len(rows), 2835, 2835, 256, 0)
        offset = 14 + 40 + len(palette)
        return b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + info + palette + rows

    assert images.read_input(rle8_bmp(1000))[0].shape == (32, 32, 3)  # a megapixel: read
    started = time.perf_counter()
    with pytest.raises(images.ImageError, match="1001x1001 pixels and run-length compressed"):
        images.read_input(rle8_bmp(1001))
    assert time.perf_counter() - started < 0.5


def test_49_a_model_file_listing_one_member_many_times_is_refused(tmp_path):
    import warnings

    source = tmp_path / "tiny.keras"
    shutil.copy(helpers.tiny_run() / "model.keras", source)
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(bomb, "w") as out, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name it is asked to write
        for member in original.infolist():
            out.writestr(member, original.read(member))
        for _ in range(5):
            out.writestr("model.weights.h5", original.read("model.weights.h5"))
    with pytest.raises(ValueError, match="^The model file bomb.keras lists 8 entries for 3 names"):
        models.load_model(bomb)
    models.load_model(source)  # the file it was made from loads


def test_49_odd_status_fields_neither_fail_the_queue_nor_hold_a_slot_for_ever(tmp_path):
    from cifar_core import jobs

    ghost = runs.create_run(tmp_path / "20260101-000001-tiny", TINY, helpers.tiny_config())
    runs.write_status(ghost, state="starting", slot=[0])  # live: a start under way for a minute
    assert runs.read_status(ghost)["slot"] is None and [r["run_id"] for r in jobs.active_jobs(tmp_path)]
    assert jobs._free_slot(tmp_path) is None  # no TypeError (unhashable list); the one slot is the live job's
    # "starting", with "updated" far in the future (a clock set ahead, an edited file): no start under way
    (ghost / "status.json").write_text(json.dumps({"state": "starting", "updated": 1e12, "slot": 0}))
    assert runs.read_status(ghost)["state"] == "interrupted"
    assert jobs._free_slot(tmp_path) == 0


def test_49_a_study_record_whose_pid_is_out_of_range_or_another_process_is_no_running_sweep(tmp_path):
    from cifar_core import sweeps

    (tmp_path / ".sweeps").mkdir()
    for pid in (2**31, 2**63, 1, os.getpid()):  # os.kill(2**31) raised OverflowError; pid 1 and this test are alive
        (tmp_path / ".sweeps" / "s.json").write_text(json.dumps({"pid": pid}))
        assert sweeps.sweep_running(tmp_path, "s") is False
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "sweep-worker"])
    try:
        (tmp_path / ".sweeps" / "s.json").write_text(json.dumps({"pid": worker.pid}))
        assert sweeps.sweep_running(tmp_path, "s") is True
    finally:
        worker.kill()
        worker.wait()


def test_49_a_home_folder_of_no_user_is_a_missing_data_source_not_a_traceback():
    from cifar_core import data

    source = "~no_such_user_of_cifar_studio/cifar"
    with pytest.raises(data.DataError, match="does not exist"):  # Path.expanduser had raised RuntimeError
        data.load_data(source)
    assert sources.app_label(source) == "cifar"


def test_49_a_run_of_deeply_nested_folders_is_deleted_whole(tmp_path):
    run = runs.create_run(tmp_path / "20260101-000001-tiny", TINY, helpers.tiny_config())
    runs.write_status(run, state="finished")
    deep = run
    for _ in range(sys.getrecursionlimit() + 100):  # Python 3.11's rmtree recursed past its limit, half-deleting
        deep = deep / "d"
        deep.mkdir()
    (deep / "f").write_text("x")
    try:
        runs.delete_run(run)
        assert not run.exists()
    finally:  # pytest's own cleanup of old temporary folders is the same recursive rmtree
        subprocess.run(["rm", "-rf", str(run)], check=False)


def test_49_a_studys_odd_attributes_and_huge_stored_numbers_are_sentences(tmp_path):
    import optuna

    from cifar_core import studies

    url = studies.default_storage(tmp_path)
    study = optuna.create_study(study_name="s", storage=studies.open_storage(url), direction="maximize")
    study.set_user_attr("trials", "2")  # another tool's study, an edited database: the Sweep page had failed
    assert studies.summary(url, "s")["trials_wanted"] is None
    with pytest.raises(S.SpecError, match="learning_rate must be a number in"):  # float(10**400): OverflowError
        configs.config_from_dict({"learning_rate": 10**400})


def test_49_a_model_file_of_fixed_batch_or_stateful_layers_is_refused_before_keras_builds_it(tmp_path):
    import keras

    fixed = keras.Sequential([keras.Input((32, 32, 3), batch_size=2), keras.layers.GlobalMaxPooling2D(),
                              keras.layers.Dense(10)])
    fixed.save(tmp_path / "fixed.keras")
    with pytest.raises(ValueError, match=r"cannot be loaded safely: it fixes the batch size \(\w+ \[2, 32"):
        models.load_model(tmp_path / "fixed.keras")
    stateful = keras.Sequential([keras.Input((32, 32, 3), batch_size=4), keras.layers.Reshape((32, 96)),
                                 keras.layers.SimpleRNN(8, stateful=True), keras.layers.Dense(10)])
    stateful.save(tmp_path / "stateful.keras")  # its state, zeros of (batch, units), is made while Keras loads it
    with pytest.raises(ValueError, match="cannot be loaded safely: it (has a stateful layer|fixes the batch size)"):
        models.load_model(tmp_path / "stateful.keras")


def test_49_a_fixed_batch_hidden_in_a_build_config_or_a_truthy_stateful_is_refused_too(tmp_path):
    import keras

    built = keras.Sequential([keras.layers.GlobalMaxPooling2D(), keras.layers.Dense(10)])
    built.build((2, 32, 32, 3))  # no InputLayer: Keras makes one from the build config's shape, batch and all
    built.save(tmp_path / "built.keras")
    with pytest.raises(ValueError, match="cannot be loaded safely: it fixes the batch size"):
        models.load_model(tmp_path / "built.keras")
    assert models._fixed_batch_or_state({"layers": [{"config": {"stateful": 1}}]}) == "it has a stateful layer"
    assert models._fixed_batch_or_state({"config": {"stateful": False, "input_shape": [32, 32, 3],
                                                    "batch_shape": [None, 32, 32, 3]}}) is None
