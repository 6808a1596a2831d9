"""Progressive resizing: the first config.low_res_fraction of the training steps see their batches scaled down to
config.low_res_size pixels, then full size. Small steps cost a fraction of full ones, and where compute is short
they buy more of the schedule than they lose (the measured figures are in benchmarks/README.md).

One trace takes both sizes: the trained model's Input has no fixed image size (builder.build_model(any_size=True)),
a tf.Variable holds the step where full size begins (a time budget moves it, callbacks.make_time_budget), and the
model saved is one built for the spec's own image size, holding the trained weights.
"""

from __future__ import annotations

from pathlib import Path

from . import metrics, shapes
from . import spec as specs
from .config import TrainConfig


def check(model_spec: specs.ModelSpec, config: TrainConfig) -> None:
    """Raises SpecError, naming the setting and how to leave it, when config asks for progressive resizing that
    model_spec cannot take (shapes.at_size: a size not smaller than its images, a layer that does not fit, a Flatten),
    or for a batch whose activations would not fit in memory (shapes.check_batch). Every place that starts a
    training calls it before anything is created: the Train page, jobs.start_job, a sweep's study, train.train."""
    shapes.check_batch(model_spec, config.batch_size)
    if config.low_res_fraction:
        shapes.at_size(model_spec, config.low_res_size)


def switch_of(record: dict, config: TrainConfig, planned_steps: int) -> float:
    """The step where full size began (or will), as of an epoch record: the one it holds (the run logger writes
    it), else the planned share of planned_steps; 0 without progressive resizing."""
    if not config.low_res_fraction:
        return 0.0
    stored = record.get("low_res_switch")
    if isinstance(stored, float) and 0 <= stored <= 1e12:
        return stored
    return config.low_res_fraction * planned_steps


def low_res_first(train_ds, size: int, switch, first_step: int = 0):
    """The batches of a repeated training dataset, counted from first_step (where a resumed run starts), scaled down
    to size x size before step `switch` (a tf.Variable). Area averaging, as a smaller photograph would be. With
    unknown image sizes in the trace, a 16-pixel step of `fast` still ran at the speed of a step traced for 16
    pixels (benchmarks/README.md)."""
    import tensorflow as tf

    def scale(step, batch):
        images, labels = batch
        images = tf.cond(step < switch, lambda: tf.image.resize(images, [size, size], method="area"),
                         lambda: images)
        return images, labels

    return train_ds.enumerate(start=first_step).map(scale, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE)


def progressive_resizing(model_spec: specs.ModelSpec, config: TrainConfig, train_ds, planned_steps: int,
                         first_step: int, run_dir: Path, log):
    """The training dataset with its first config.low_res_fraction of planned_steps scaled down (low_res_first),
    the step where full size begins (a tf.Variable), and the model to save: one built for the spec's own image
    size, since the trained one takes any size. A resumed run (first_step > 0) goes on from the switch its last
    epoch recorded."""
    import tensorflow as tf

    from .builder import build_model

    records = metrics.epoch_records(run_dir) if first_step else []
    first = switch_of(records[-1] if records else {}, config, planned_steps)
    switch = tf.Variable(round(first), dtype=tf.int64, trainable=False)
    side = config.low_res_size
    log(f"Progressive resizing: the first {int(switch.numpy())} of {planned_steps} steps on {side}x{side} images, "
        "then full size" + (" (a first guess, which the time budget moves)." if config.minutes is not None else "."))
    return low_res_first(train_ds, side, switch, first_step), switch, build_model(model_spec)
