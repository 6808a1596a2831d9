"""The run's Keras callbacks and the files they keep: metrics and status as training goes, the model after every
epoch (atomically), stop requests between batches, and Keras's BackupAndRestore for resume.

Callbacks are made by functions because they subclass Keras classes, and keras is imported only when training.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from . import files, metrics, runs

BATCH_POINT_INTERVAL_S = 0.5  # metrics.jsonl gets at most two batch points a second


def readable_weights(path: Path) -> bool:
    """Whether a weights file opens and every array in it reads: a file torn mid-write may open and fail only at
    the array it lost (h5py then raises OSError, RuntimeError, KeyError or ValueError, by where the tear is)."""
    import h5py

    def read(name, obj):
        if isinstance(obj, h5py.Dataset):
            obj[()]

    try:
        with h5py.File(path, "r") as f:
            f.visititems(read)
    except Exception:
        return False
    return True


def _checkpoint_epoch(meta: Path, weights: Path) -> int | None:
    """The completed epochs of one BackupAndRestore checkpoint (metadata and weights), or None when either is
    missing, torn or unreadable."""
    data = runs.read_json(meta)
    epoch = data.get("epoch") if isinstance(data, dict) else None
    if isinstance(epoch, int) and not isinstance(epoch, bool) and 0 <= epoch <= 10**6 and weights.is_file() \
            and readable_weights(weights):
        return epoch
    return None


def restore_backup_metadata(backup_dir: Path) -> tuple[int, str | None]:
    """The last completed epoch in the BackupAndRestore folder, after checking its checkpoint before Keras reads it:
    a torn or unreadable checkpoint (metadata or weights, a kill or a full disk mid-write, the first epoch's
    included) falls back to the previous one (.bkp), or, when there is none, the backup is cleared and the run
    starts again from epoch 1. Keras itself falls back only on an OSError, and not at all without a previous copy."""
    meta, prev_meta = backup_dir / "training_metadata.json", backup_dir / "training_metadata.json.bkp"
    weights, prev_weights = backup_dir / "latest.weights.h5", backup_dir / "latest.weights.h5.bkp"
    if not any(p.exists() for p in (meta, weights, prev_meta, prev_weights)):
        return 0, None
    epoch = _checkpoint_epoch(meta, weights)
    if epoch is not None:
        return epoch, None
    older = _checkpoint_epoch(prev_meta, prev_weights)
    if older is not None:
        os.replace(prev_weights, weights)
        runs.write_json(meta, runs.read_json(prev_meta))
        return older, f"The backup was torn; resuming from the previous checkpoint (epoch {older})."
    for path in (meta, weights, prev_meta, prev_weights):
        path.unlink(missing_ok=True)
    return 0, "The backup was torn and no older checkpoint exists; training starts again from epoch 1."


def save_model_atomic(model, path: Path, saved_as=None) -> None:
    """model.save through files.write_atomic: a crash or a full disk mid-save leaves the previous model whole.
    saved_as: a model of the same layers that model's weights are copied into and saved instead (the spec's own
    image size, where progressive resizing trains a model that takes any)."""
    if saved_as is not None:
        saved_as.set_weights(model.get_weights())
        model = saved_as
    files.write_atomic(path, write=model.save, suffix=".tmp.keras")


def make_run_logger(run_dir: Path, steps_per_epoch: int, epochs, time_offset: float, log=None, saved_as=None,
                    switch=None):
    """epochs: the number planned, or a callable giving the current estimate (under a time budget); saved_as: as
    save_model_atomic's; switch: progressive resizing's tf.Variable, recorded with every epoch (low_res_switch) so
    that a resumed run and the speed estimate know where full size began."""
    import keras

    def planned() -> int:
        return int(epochs()) if callable(epochs) else epochs

    class RunLogger(keras.callbacks.Callback):
        """Writes metrics.jsonl and status.json, saves the model after every epoch, and honours stop requests
        (the stop file or SIGTERM) between batches."""

        def __init__(self):
            super().__init__()
            self.start = time.time() - time_offset
            self.last_point = 0.0
            self.pace_from = None  # (seconds, epochs done) at this fit's first step: the pace is measured from it
            self.epoch = 0
            self.steps_done = 0  # in the epoch under way: a time budget may end it early
            self.stopped = False
            self.progbar = None

        def _now(self):
            return round(time.time() - self.start, 3)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1
            # Keras's own bar per batch in a terminal; piped output (a job log) keeps the one-line epoch summaries
            self.progbar = keras.utils.Progbar(steps_per_epoch, stateful_metrics=["loss", "accuracy"]) \
                if log and sys.stdout.isatty() else None

        def on_train_batch_end(self, batch, logs=None):
            if self.progbar is not None:
                self.progbar.update(batch + 1, [(k, float(v)) for k, v in (logs or {}).items()])
            self.steps_done = batch + 1
            now = time.time()
            if now - self.last_point >= BATCH_POINT_INTERVAL_S or batch + 1 == steps_per_epoch:
                self.last_point = now
                record = {"kind": "batch", "epoch": self.epoch, "step": batch + 1, "time": self._now(),
                          **{k: float(v) for k, v in (logs or {}).items()}}
                metrics.append_metrics(run_dir, [record])
                if self.pace_from is None:
                    self.pace_from = [record["time"], self.epoch - 1 + (batch + 1) / steps_per_epoch]
                runs.write_status(run_dir, state="running", epoch=self.epoch, epochs=planned(), step=batch + 1,
                                  steps_per_epoch=steps_per_epoch, time=record["time"], pace_from=self.pace_from)
            if runs.stop_requested(run_dir) or _SIGNALLED:
                self.stopped = True
                self.model.stop_training = True
                runs.write_status(run_dir, state="stopping")

        def on_epoch_end(self, epoch, logs=None):
            if self.stopped:  # a partial epoch: its metrics would not be comparable, and resume redoes it
                return
            record = {"kind": "epoch", "epoch": epoch + 1, "step": self.steps_done, "time": self._now(),
                      **{k: float(v) for k, v in (logs or {}).items()}}
            optimizer = getattr(self.model, "optimizer", None)
            if optimizer is not None:  # where the schedule stands: a time budget's test reads it
                record["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
            if switch is not None:
                record["low_res_switch"] = int(switch.numpy())
            save_model_atomic(self.model, run_dir / "model.keras", saved_as)
            metrics.append_metrics(run_dir, [record])
            runs.write_status(run_dir, state="running", epoch=epoch + 1, epochs=planned(), step=self.steps_done,
                              steps_per_epoch=steps_per_epoch, time=record["time"])
            if log:
                shown = ", ".join(f"{k} {record[k]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                                  if record.get(k) is not None)
                log(f"epoch {epoch + 1}/{planned()} at {record['time']:.0f} s: {shown}")

    return RunLogger()


def make_backup(backup_dir: Path, logger):
    import keras

    class Backup(keras.callbacks.BackupAndRestore):
        """Keras's BackupAndRestore, except that a stopped (partial) epoch is not backed up: Keras calls on_epoch_end
        after a stop request too, and the backup would then count the partial epoch as done, so that resume skipped
        the rest of it and the run never got that epoch's metrics point."""

        def on_epoch_end(self, epoch, logs=None):
            if not logger.stopped:
                super().on_epoch_end(epoch, logs)

        def _save_model(self):
            # A full disk inside h5py is a RuntimeError whose text says so: the user gets the one disk-full sentence.
            try:
                super()._save_model()
            except Exception as e:
                if files.is_disk_full(e) and not isinstance(e, files.DiskFullError):
                    raise files.DiskFullError(self._weights_path) from e
                raise

        def _load_model(self):
            # A job killed while it wrote latest.weights.h5 leaves a torn file, and h5py reports that as a
            # RuntimeError ("Can't get deprecated info for object (addr overflow ...)"), seen in test_kill_then_resume.
            # Keras falls back on the double checkpoint's previous copy for an OSError only; give it one.
            try:
                super()._load_model()
            except (RuntimeError, ValueError) as e:
                raise OSError(f"the backup's weights cannot be read ({e})") from e

    return Backup(str(backup_dir), double_checkpoint=True, delete_checkpoint=False)


def make_lookahead(total_steps, every: int = 5, decay: float = 0.95 ** 5):
    """airbench's lookahead: every `every` steps the weights (BatchNormalization's moving statistics included) move
    to an exponential moving average of themselves, and training continues from that average. The average's
    weight grows as decay * (step / total_steps) ** 3, so it does nothing early and smooths the last epochs; the
    model left at the end of training is the average. total_steps may be a callable (a time budget's estimate)."""
    import keras
    import numpy as np

    def total() -> float:
        return max(1.0, float(total_steps() if callable(total_steps) else total_steps))

    class Lookahead(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.step = int(self.model.optimizer.iterations.numpy())
            self.floats = [w for w in self.model.weights if "float" in str(w.dtype)]
            self.average = [np.array(w.numpy()) for w in self.floats]

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            if self.step % every == 0:
                self._update(decay * min(1.0, self.step / total()) ** 3)

        def on_train_end(self, logs=None):
            # airbench ends with the average alone (weight 1.0), dropping up to every - 1 last steps; a run of fewer
            # than `every` steps would then end at its initial weights, so the last steps get the usual weight.
            self._update(decay * min(1.0, self.step / total()) ** 3)

        def _update(self, weight: float) -> None:
            for w, average in zip(self.floats, self.average):
                average *= weight
                average += (1.0 - weight) * w.numpy()
                w.assign(average)

    return Lookahead()


def make_time_budget(budget_s: float, time_offset: float, steps_per_epoch: int, set_length, warm_steps: int = 3,
                     low_res=None):
    """Ends the fit when the budget does, with the schedule at its end. After warm_steps (the first ones trace and
    build), it times the steps, validation and saves included, and moves the schedule's end (set_length, or None for
    a constant learning rate) to the step where this pace reaches the budget, then stops the fit at that step. The
    estimate is refined at every batch, so it follows a machine that speeds up or slows down.

    low_res: (fraction, switch, set_switch, cost_ratio) under progressive resizing, whose first `fraction` of the
    steps (those before step `switch`, the first guess) train on small images. The two kinds of step are timed
    apart; until a full-size step has been timed, one is taken to cost 1 / cost_ratio low-resolution steps (the
    estimate's ratio). set_switch(step) moves the step where full size begins with the schedule's length, until
    that step is reached."""
    import keras

    fraction, first_switch, set_switch, cost_ratio = low_res or (0.0, 0, None, 1.0)

    class TimeBudget(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.total = None
            self.start = time.time() - time_offset  # as the run logger counts: the metrics' time is the budget's
            self.reserve = 0.0  # the longest validation and save seen at an epoch's end: the last one comes too
            self.last_batch_end = None
            self.switch = first_switch
            self.per_step = {}  # "low" and "full": seconds a step, once timed

        def current_total(self) -> float:
            return self.total or steps_per_epoch

        def epochs_estimate(self) -> int:
            return max(1, -(-int(self.current_total()) // steps_per_epoch))

        def on_train_begin(self, logs=None):
            self.step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
            self.phase, self.phase_steps, self.warm_at = None, self.step, None

        def on_epoch_begin(self, epoch, logs=None):
            if self.last_batch_end is not None:
                self.reserve = max(self.reserve, time.time() - self.last_batch_end)

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            now = self.last_batch_end = time.time()
            if now - self.start >= budget_s - self.reserve:
                self.finish()
                return
            phase = "low" if self.step <= self.switch else "full"
            if phase != self.phase:  # a new kind of step: its first ones build oneDNN's kernels for the new size
                if self.phase is not None:
                    self.phase_steps, self.warm_at = 0, None
                self.phase = phase
            self.phase_steps += 1
            if self.warm_at is None:
                if self.phase_steps >= warm_steps:
                    self.warm_at = (now, self.step)
                return
            timed = self.step - self.warm_at[1]
            if timed < 1:
                return
            self.per_step[phase] = (now - self.warm_at[0]) / timed
            left = budget_s - self.reserve - (now - self.start)
            if phase == "low":
                low, full = self.per_step["low"], self.per_step.get("full", self.per_step["low"] / cost_ratio)
                # (fraction * total - step) low steps and (1 - fraction) * total full ones fill what is left
                self.total = (left + self.step * low) / (fraction * low + (1 - fraction) * full)
                self.switch = max(self.step, round(fraction * self.total))
                if self.switch == self.step:
                    self.total = self.step + max(0.0, left / full)
                set_switch(self.switch)
            else:
                self.total = self.step + max(0.0, left / self.per_step["full"])
            if set_length:
                set_length(self.total)
            if self.step >= self.total - 0.5:
                self.finish()

        def finish(self):
            """Stops here, with the schedule ending at this very step."""
            self.total = self.step
            if set_length:
                set_length(self.step)
            self.model.stop_training = True

    return TimeBudget()


_SIGNALLED = False


def _on_stop_signal(signum, frame):
    global _SIGNALLED
    _SIGNALLED = True


def install_stop_signals() -> None:
    """SIGTERM (the page's Stop, after its grace period) and Ctrl-C in a terminal both ask the job to stop after its
    batch: it then saves its model and says how to resume, instead of dying mid-write."""
    global _SIGNALLED
    _SIGNALLED = False
    signal.signal(signal.SIGTERM, _on_stop_signal)
    signal.signal(signal.SIGINT, _on_stop_signal)
