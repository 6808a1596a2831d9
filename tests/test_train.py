"""cifar_core.train: config validation, the augmentation pipeline, a whole tiny run, stop, kill and resume, a torn
backup, NaN loss, and an invalid spec at the command line."""

import hashlib
import json
import math
import shutil
import signal
import time
from pathlib import Path

import helpers
import numpy as np
import pytest

from cifar_core import config as configs
from cifar_core import metrics, runs, spec_io
from cifar_core import train as T
from cifar_core.data import CIFAR10_CLASSES
from cifar_core.presets import get_preset

TINY = get_preset("tiny").spec


# ---------------------------------------------------------------------------------------------------------------
# the input pipeline

N = 40


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (N, 8, 8, 3), dtype=np.uint8)


def batches(x, config, training=True, batch_size=16, passes=2):
    """(image, index) pairs of `passes` epochs; labels are the image indices, one-hot over N classes."""
    ds = T.make_dataset(x, np.arange(len(x)), len(x), batch_size, training=training, config=config)
    pairs = []
    for _ in range(passes):
        for xb, yb in ds:
            xb, yb = xb.numpy(), yb.numpy()
            assert xb.dtype == np.float32 and yb.shape == (len(xb), len(x))
            assert ((yb == 0) | (yb == 1)).all() and (yb.sum(axis=1) == 1).all()  # one-hot
            pairs += list(zip(xb, yb.argmax(axis=1)))
    return pairs


def test_flip_only(images):
    config = configs.TrainConfig(flip=True, translate=0, seed=3)
    pairs = batches(images, config)
    assert sorted(i for _, i in pairs) == sorted(list(range(N)) * 2)  # every image once an epoch
    mirrored = 0
    for image, i in pairs:
        same, mirror = np.array_equal(image, images[i]), np.array_equal(image, images[i][:, ::-1])
        assert same or mirror
        mirrored += mirror
    assert 0 < mirrored < len(pairs)  # some of each


def test_translate_only(images):
    config = configs.TrainConfig(flip=False, translate=2, seed=5)
    pairs = batches(images, config)
    shifts = set()
    for image, i in pairs:
        padded = np.pad(images[i].astype(np.float32), ((2, 2), (2, 2), (0, 0)), mode="reflect")
        found = [(dy, dx) for dy in range(5) for dx in range(5) if np.array_equal(image, padded[dy:dy + 8, dx:dx + 8])]
        assert found, f"image {i} is not a shifted crop of its reflect-padded original"
        shifts.add(found[0])
    assert len(shifts) > 10  # shifts in both axes, in both directions, are used


def test_no_augmentation_when_evaluating(images):
    config = configs.TrainConfig(flip=True, translate=2)
    pairs = batches(images, config, training=False, passes=1)
    assert [i for _, i in pairs] == list(range(N))  # in order, not shuffled
    for image, i in pairs:
        assert np.array_equal(image, images[i])


def test_last_partial_batch_is_kept(images):
    ds = T.make_dataset(images, np.zeros(N, int), 2, 16, training=False, config=configs.TrainConfig())
    assert [len(xb) for xb, _ in ds] == [16, 16, 8]


# ---------------------------------------------------------------------------------------------------------------
# a whole run


def epoch_points(run_dir):
    return [r["epoch"] for r in metrics.read_metrics(run_dir) if r["kind"] == "epoch"]


def test_tiny_run_is_complete():
    run = helpers.tiny_run()
    config = runs.read_json(run / "config.json")
    assert spec_io.from_dict(config["spec"]) == TINY
    assert config["train"]["epochs"] == 1 and config["train"]["limit"] == 300 and config["train"]["data"] == "sample"
    assert config["class_names"] == list(CIFAR10_CLASSES) and config["params"] == 5418
    assert config["data_source"] == "sample" and "tensorflow" in config["versions"]

    status = runs.read_status(run)
    assert status["state"] == "finished" and status["epoch"] == 1 and status["error"] is None
    assert not runs.is_locked(run)

    records = metrics.read_metrics(run)
    steps = math.ceil(300 / 64)
    batch = [r for r in records if r["kind"] == "batch"]
    epoch = [r for r in records if r["kind"] == "epoch"]
    assert batch and all(r["epoch"] == 1 and 1 <= r["step"] <= steps and "loss" in r and "accuracy" in r
                         for r in batch)
    assert batch[-1]["step"] == steps  # the last batch of an epoch is always recorded
    assert len(epoch) == 1
    point = epoch[0]
    assert point["epoch"] == 1 and point["step"] == steps and point["time"] > 0
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert isinstance(point[key], float) and math.isfinite(point[key])
    assert 0 <= point["val_accuracy"] <= 1

    from cifar_core.models import load_model

    model = load_model(run / "model.keras")
    assert model.output_shape == (None, 10) and model.count_params() == 5418

    stored = runs.read_json(run / "eval.json")
    result = stored["sample:test"]  # the sample's own test split
    assert result["n"] == 1000 and result["split"] == "test"
    assert result["model_sha256"] == hashlib.sha256((run / "model.keras").read_bytes()).hexdigest()
    assert any((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert not (run / "stop").exists()
    assert any("test accuracy" in m for m in helpers.tiny_run_log())  # the sample has a test split


def test_a_low_resolution_run_trains_and_saves_the_specs_own_size(tmp_path):
    config = helpers.tiny_config(epochs=2, low_res_fraction=0.5, low_res_size=16)
    log = helpers.train_in_process(TINY, config, tmp_path / "run")
    assert "the first 5 of 10 steps on 16x16 images" in "\n".join(log)
    assert runs.read_status(tmp_path / "run")["state"] == "finished"
    from cifar_core.models import load_model

    assert load_model(tmp_path / "run" / "model.keras").input_shape == (None, 32, 32, 3)
    assert len(metrics.epoch_records(tmp_path / "run")) == 2


def test_a_network_that_cannot_take_small_images_is_refused_before_a_run_exists(tmp_path):
    config = helpers.tiny_config(low_res_fraction=0.5, low_res_size=24)
    with pytest.raises(configs.SpecError, match="a Flatten makes its Dense layers depend on it"):
        helpers.train_in_process(get_preset("report-2-1").spec, config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------------------------
# stop, kill, resume


def test_stop_request_then_resume(tmp_path):
    run = tmp_path / "run"
    job = helpers.start_cli("train", "--preset", "tiny", "--data", "sample", "--epochs", "50", "--limit", "640",
                            "--run-dir", run)
    try:
        helpers.wait_for(lambda: epoch_points(run), timeout=180, interval=0.05, process=job)
        runs.request_stop(run)
        asked = time.time()
        out, err = job.communicate(timeout=60)
        took = time.time() - asked
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert job.returncode == 0, err
    assert took < 15
    assert out.strip().splitlines()[-1] == str(run)
    status = runs.read_status(run)
    assert status["state"] == "stopped"
    from cifar_core.models import load_model

    saved = load_model(run / "model.keras")
    assert saved.output_shape == (None, 10)
    done = epoch_points(run)
    assert done == list(range(1, len(done) + 1)) and len(done) < 50
    # the model kept is the last whole epoch's (the backup's weights), whose validation accuracy the run reports,
    # not the weights of the stopped epoch's first steps
    kept = [w.copy() for w in saved.get_weights()]
    saved.load_weights(run / "backup" / "latest.weights.h5")
    assert all(np.array_equal(a, b) for a, b in zip(kept, saved.get_weights(), strict=True))

    # resume (in this process, for 1 more epoch than were complete): the stopped epoch is trained again, whole
    config = configs.config_from_dict({**runs.read_json(run / "config.json")["train"], "epochs": len(done) + 1})
    helpers.train_in_process(TINY, config, run, resume=True)
    assert epoch_points(run) == list(range(1, len(done) + 2))
    assert runs.read_status(run)["state"] == "finished"
    assert not (run / "stop").exists()


def test_kill_then_resume(tmp_path):
    run = tmp_path / "run"
    job = helpers.start_cli("train", "--preset", "tiny", "--data", "sample", "--epochs", "5", "--limit", "640",
                            "--run-dir", run)
    try:
        helpers.wait_for(lambda: len(epoch_points(run)) >= 2, timeout=180, interval=0.05, process=job)
        assert job.poll() is None, "the job ended before it could be killed"
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=30)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert job.returncode == -signal.SIGKILL
    assert runs.read_status(run)["state"] == "interrupted"
    before = epoch_points(run)
    assert 2 <= len(before) < 5

    resumed = helpers.run_cli("train", "--run-dir", run, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming after epoch" in resumed.stdout
    assert runs.read_status(run)["state"] == "finished"
    records = metrics.read_metrics(run)
    assert epoch_points(run) == [1, 2, 3, 4, 5]
    epochs_in_order = [r["epoch"] for r in records]
    assert epochs_in_order == sorted(epochs_in_order)  # no stale points of the killed epoch
    times = [r["time"] for r in records if r["kind"] == "epoch"]
    assert times == sorted(times)
    for e in range(1, 6):
        assert any(r["kind"] == "batch" and r["epoch"] == e for r in records)


def test_resume_with_a_torn_backup_weights_file_uses_the_previous_copy(tmp_path, monkeypatch):
    # What a kill in the middle of the backup's weights write left in test_kill_then_resume: the metadata of the
    # epoch before, a torn latest.weights.h5 that h5py opens but then fails to read with a RuntimeError ("Can't get
    # deprecated info for object (addr overflow ...)"), and the intact .bkp copy. A truncated file is refused as an
    # OSError instead, which Keras already handles, so the RuntimeError is raised here for the torn file's bytes.
    import keras

    run = tmp_path / "run"
    helpers.train_in_process(TINY, helpers.tiny_config(epochs=2), run)
    backup = run / "backup"
    assert (backup / "latest.weights.h5.bkp").exists()
    (backup / "latest.weights.h5").write_bytes(b"torn")
    runs.write_json(backup / "training_metadata.json", {"epoch": 1, "batch": -1})
    load_weights = keras.Model.load_weights

    def h5py_on_a_torn_file(self, filepath, *args, **kwargs):
        if Path(filepath).read_bytes() == b"torn":
            raise RuntimeError("Can't get deprecated info for object (addr overflow, addr = 6144, eoa = 2048)")
        return load_weights(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "load_weights", h5py_on_a_torn_file)
    runs.write_status(run, state="interrupted")
    helpers.train_in_process(TINY, helpers.tiny_config(epochs=2), run, resume=True)
    assert runs.read_status(run)["state"] == "finished"
    assert epoch_points(run) == [1, 2]


def test_resume_with_torn_backup_metadata(tmp_path):
    run = shutil.copytree(helpers.tiny_run(), tmp_path / "run")
    (run / "backup" / "training_metadata.json").write_text('{"epoch": 1, "bat')
    runs.write_status(run, state="interrupted")
    log = helpers.train_in_process(TINY, helpers.tiny_config(), run, resume=True)
    assert any("torn" in m for m in log)
    assert runs.read_status(run)["state"] == "finished"
    assert epoch_points(run) == [1]


def test_resume_needs_a_run(tmp_path):
    with pytest.raises(runs.RunError, match="no run"):
        T.train(TINY, helpers.tiny_config(), tmp_path / "none", resume=True)
    assert not (tmp_path / "none").exists()


def test_nan_loss_fails_and_keeps_the_last_good_model(tmp_path, monkeypatch):
    import keras

    def exploding_optimizer(config, steps_per_epoch, schedule=None):
        # a sane first epoch, then a learning rate that overflows the weights
        lr = keras.optimizers.schedules.PiecewiseConstantDecay([steps_per_epoch], [1e-3, 1e30])
        return keras.optimizers.SGD(lr)

    monkeypatch.setattr(T, "make_optimizer", exploding_optimizer)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="NaN"):
        helpers.train_in_process(TINY, helpers.tiny_config(epochs=3), run)
    status = runs.read_status(run)
    assert status["state"] == "failed" and "NaN" in status["error"]
    assert epoch_points(run) == [1]
    from cifar_core.models import load_model

    model = load_model(run / "model.keras")
    assert all(np.isfinite(np.asarray(w, dtype=np.float32)).all() for w in model.weights)
    assert not runs.is_locked(run)
    # the backup of the last good epoch is kept, so the run can be resumed from it (with a lower learning rate)
    assert runs.read_json(run / "backup" / "training_metadata.json")["epoch"] == 1
    assert (run / "backup" / "latest.weights.h5").stat().st_size > 0


def test_invalid_spec_at_the_command_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "bad", "layers": [{"type": "Conv2D", "filters": 0}, {"type": "Flatten"}]}))
    for where in (["--run-dir", tmp_path / "run"], ["--runs-dir", tmp_path / "runs"]):
        result = helpers.run_cli("train", "--spec", bad, *where, timeout=60)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: layer 1 (Conv2D): filters")
        assert result.stdout == ""
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()
    result = helpers.run_cli("train", "--preset", "tiny", "--epochs", "0", "--runs-dir", tmp_path / "runs", timeout=60)
    assert result.returncode == 2 and "epochs" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_a_time_budget_ends_on_time_with_the_schedule_at_its_end(tmp_path):
    """--minutes: the job times its own steps and fits the one-cycle schedule to the budget, so that the run ends
    within 10% of it and its last step is at the schedule's end learning rate (end_fraction x peak)."""
    budget_s = 45
    config = helpers.tiny_config(limit=None, minutes=budget_s / 60, schedule="one-cycle", end_fraction=0.1,
                                 start_fraction=0.2, warmup_epochs=0.2)
    helpers.train_in_process(TINY, config, tmp_path / "run")
    epochs = [r for r in metrics.read_metrics(tmp_path / "run") if r["kind"] == "epoch"]
    assert abs(epochs[-1]["time"] - budget_s) <= 0.1 * budget_s, epochs[-1]["time"]
    assert len(epochs) > 5  # far more than the preset's 1 epoch: the budget, not the epochs, decided
    assert epochs[-1]["learning_rate"] == pytest.approx(0.1 * config.learning_rate, rel=1e-3)
    assert max(r["learning_rate"] for r in epochs) > 0.5 * config.learning_rate  # it went through its peak
    assert runs.read_status(tmp_path / "run")["state"] == "finished"


def test_a_fresh_run_made_for_other_settings_is_not_trained_into(tmp_path):
    """Of two jobs given one folder at once, the second found the first's fresh run and trained its own model there,
    under the first's record."""
    run = runs.create_run(tmp_path / "run", TINY, helpers.tiny_config(), state="queued")
    record = (run / "config.json").read_bytes()
    with pytest.raises(runs.RunError, match="made by another job for another model or other settings"):
        T.train(TINY, helpers.tiny_config(seed=2), run, log=lambda m: None)
    assert (run / "config.json").read_bytes() == record and not (run / "model.keras").exists()
    runs.RunLock(run).acquire().release()  # refused, the job let go of the run's lock


def test_a_new_run_records_the_batch_its_budget_picked(tmp_path):
    """fit_batch_to_budget: too few steps in the budget halve the batch, in config.json and the log; on a GPU no run
    has measured, the CPU's constants are not trusted and the batch stays."""
    config = helpers.tiny_config(minutes=0.01, min_steps=1000, optimizer="sgd", learning_rate=0.4)
    cpu, gpu = {"device": "CPU: test", "gpus": 0}, {"device": "GPU: test", "gpus": 1}
    run = runs.create_run(tmp_path / "runs" / "20260101-000000-tiny", TINY, config)
    assert T.fit_batch_to_budget(run, TINY, config, 300, gpu, "float32", 1, print) is config
    messages = []
    fitted = T.fit_batch_to_budget(run, TINY, config, 300, cpu, "float32", 1, messages.append)
    assert (fitted.batch_size, fitted.learning_rate) == (16, 0.1)  # a quarter of 64, the most it halves
    assert runs.read_config(run)["train"] == configs.to_dict(fitted) and fitted.min_steps is None
    assert runs.read_config(run)["budget_batch"] == messages[0]
    # 0.6 s over 300 x (0.312 ms + 1,622,336 x 0.1122 ns) = 0.148 s an epoch: 4.05 epochs of 300 images
    assert messages == ["A budget of 0.01 minutes holds about 19 steps of 64 images here, fewer than the fewest "
                        "steps for a budget (min_steps 1000): training at batch 16, learning rate 0.1, for about 76 "
                        "steps."]


def test_one_cycle_without_warm_up_decays_from_the_start():
    config = configs.TrainConfig(epochs=2, learning_rate=1.65, schedule="one-cycle", warmup_epochs=0.0,
                                 start_fraction=1.0, end_fraction=0.0)
    schedule = T.make_schedule(config, steps_per_epoch=50)  # 100 steps, linearly from 1.65 to 0
    assert [round(float(schedule(s)), 4) for s in (0, 50, 100)] == [1.65, 0.8333, 0.0]


def test_the_muon_optimizer_gets_the_settings():
    config = configs.TrainConfig(optimizer="muon", learning_rate=1.65, momentum=0.85, filter_learning_rate=0.3,
                                 bias_lr_scale=64.0, weight_decay=0.016)
    optimizer = T.make_optimizer(config, steps_per_epoch=10)
    assert (type(optimizer).__name__, optimizer.filter_learning_rate, optimizer.peak_learning_rate,
            optimizer.bias_lr_scale, optimizer.momentum, optimizer.nesterov) == ("MuonSGD", 0.3, 1.65, 64.0, 0.85, True)

