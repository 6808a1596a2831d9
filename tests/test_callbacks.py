"""cifar_core.callbacks: the torn-backup repair, the atomic model save and the run logger's records, without a
real training (the trainings themselves are in test_train.py)."""

import numpy as np
import pytest

from cifar_core import callbacks as C
from cifar_core import metrics, runs


def weights_file(path, value: float) -> bytes:
    import h5py

    with h5py.File(path, "w") as f:
        f["w"] = np.full(3, value)
    return path.read_bytes()


def test_restore_backup_metadata(tmp_path):
    backup = tmp_path / "backup"
    assert C.restore_backup_metadata(backup) == (0, None)
    backup.mkdir()
    runs.write_json(backup / "training_metadata.json", {"epoch": 3, "batch": 0})
    weights_file(backup / "latest.weights.h5", 3)
    assert C.restore_backup_metadata(backup) == (3, None)

    # torn, with an older checkpoint: that one is used
    (backup / "training_metadata.json").write_text('{"epoch": 4, "ba')
    runs.write_json(backup / "training_metadata.json.bkp", {"epoch": 3, "batch": 0})
    weights_file(backup / "latest.weights.h5", 4)
    epoch_3 = weights_file(backup / "latest.weights.h5.bkp", 3)
    epoch, note = C.restore_backup_metadata(backup)
    assert epoch == 3 and "previous checkpoint" in note
    assert (backup / "latest.weights.h5").read_bytes() == epoch_3
    assert runs.read_json(backup / "training_metadata.json")["epoch"] == 3

    # torn, no older checkpoint: start over
    (backup / "training_metadata.json").write_text("\0\0garbage")
    (backup / "training_metadata.json.bkp").unlink()
    epoch, note = C.restore_backup_metadata(backup)
    assert epoch == 0 and "starts again from epoch 1" in note
    assert not (backup / "training_metadata.json").exists() and not (backup / "latest.weights.h5").exists()


class FakeModel:
    stop_training = False

    def save(self, path):
        with open(path, "wb") as f:
            f.write(b"a whole model")


def test_save_model_atomic_replaces_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"the previous model")
    C.save_model_atomic(FakeModel(), path)
    assert path.read_bytes() == b"a whole model" and [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_run_logger_points_epochs_and_stop(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "BATCH_POINT_INTERVAL_S", 3600.0)  # only the first and the last batch of an epoch
    logger = C.make_run_logger(tmp_path, steps_per_epoch=3, epochs=2, time_offset=0.0)
    logger.set_model(FakeModel())
    logger.on_epoch_begin(0)
    for batch in range(3):
        logger.on_train_batch_end(batch, {"loss": float("nan") if batch == 2 else 1.0, "accuracy": np.float32(0.5)})
    logger.on_epoch_end(0, {"loss": 1.0, "accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.4})
    records = metrics.read_metrics(tmp_path)
    assert [(r["kind"], r["epoch"], r["step"]) for r in records] == [("batch", 1, 1), ("batch", 1, 3), ("epoch", 1, 3)]
    assert records[1]["loss"] is None  # NaN is written as null
    assert records[2]["val_accuracy"] == 0.4 and (tmp_path / "model.keras").read_bytes() == b"a whole model"
    assert runs.read_json(tmp_path / "status.json")["epoch"] == 1

    runs.request_stop(tmp_path)
    logger.on_epoch_begin(1)
    logger.on_train_batch_end(0, {"loss": 1.0})
    assert logger.stopped and logger.model.stop_training
    logger.on_epoch_end(1, {"loss": 1.0})  # a stopped epoch leaves no epoch point
    assert [r["kind"] for r in metrics.read_metrics(tmp_path)].count("epoch") == 1
    assert runs.read_json(tmp_path / "status.json")["state"] == "stopping"


def test_run_logger_prints_a_line_per_epoch(tmp_path):
    lines = []
    logger = C.make_run_logger(tmp_path, steps_per_epoch=1, epochs=3, time_offset=12.0, log=lines.append)
    logger.set_model(FakeModel())
    logger.on_epoch_begin(0)
    logger.on_epoch_end(0, {"loss": 1.25, "accuracy": 0.5, "val_loss": float("nan"), "val_accuracy": 0.375})
    assert lines == ["epoch 1/3 at 12 s: loss 1.2500, accuracy 0.5000, val_loss nan, val_accuracy 0.3750"]


def test_lookahead_moves_the_weights_to_their_average_every_few_steps():
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(optimizer="sgd", loss="mse")
    lookahead = C.make_lookahead(total_steps=4, every=2, decay=0.5)
    lookahead.set_model(model)
    lookahead.on_train_begin()
    kernel = model.layers[0].kernel
    kernel.assign(np.full((2, 1), 8.0))
    lookahead.on_train_batch_end(0)  # step 1: no update
    np.testing.assert_allclose(kernel.numpy(), 8.0)
    lookahead.on_train_batch_end(1)  # step 2: weight 0.5 * (2/4)**3 = 1/16 on the average (0)
    np.testing.assert_allclose(kernel.numpy(), 8.0 * 15 / 16)
    kernel.assign(np.full((2, 1), 1.5))
    lookahead.on_train_batch_end(2)
    lookahead.on_train_batch_end(3)  # step 4: weight 0.5 on the average (7.5)
    np.testing.assert_allclose(kernel.numpy(), 0.5 * 7.5 + 0.5 * 1.5)
    kernel.assign(np.full((2, 1), 0.5))
    lookahead.on_train_end()  # the last steps join the average with the last weight, 0.5
    np.testing.assert_allclose(kernel.numpy(), 0.5 * 4.5 + 0.5 * 0.5)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def time(self):
        return self.now


def budget_run(monkeypatch, prior: float):
    """A 100 s budget over steps of 0.1 s while small and 0.4 s at full size, half of them small: (seconds taken,
    the switch, steps, the schedule lengths the budget set)."""
    import types

    clock = Clock()
    monkeypatch.setattr(C.time, "time", clock.time)
    lengths, switches = [], []
    budget = C.make_time_budget(100.0, 0.0, steps_per_epoch=50, set_length=lengths.append,
                                low_res=(0.5, 150, switches.append, prior))
    model = types.SimpleNamespace(stop_training=False, optimizer=types.SimpleNamespace(iterations=np.int64(0)))
    budget.set_model(model)
    budget.on_train_begin()
    switch, step = 150, 0
    while not model.stop_training:
        clock.now += 0.1 if step < switch else 0.4  # the batch at index `step`, as resizing.low_res_first scales it
        step += 1
        budget.on_train_batch_end(step)
        switch = switches[-1] if switches else switch
    return clock.now - 1000.0, switch, step, lengths


def test_a_time_budget_times_small_and_full_size_steps_apart(monkeypatch):
    """With the estimate's cost ratio right (a small step costs a quarter of a full one), 0.05 T + 0.2 T = 100 s
    gives T = 400 steps with the switch at 200; with it wrong (a half), the switch comes where that ratio puts it,
    and the run still ends on time with the schedule's end at its last step."""
    seconds, switch, steps, lengths = budget_run(monkeypatch, prior=0.25)
    assert seconds == pytest.approx(100.0, abs=0.4) and 199 <= switch <= 201 and 398 <= steps <= 401
    assert lengths[-1] == steps and switch < 0.5 * steps + 1
    seconds, switch, steps, lengths = budget_run(monkeypatch, prior=0.5)
    assert seconds == pytest.approx(100.0, abs=0.4) and lengths[-1] == steps
    assert switch > 300 and lengths[10] > 600  # the guess was long: a full step is 4 small ones, not 2
