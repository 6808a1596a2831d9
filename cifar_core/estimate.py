"""How long training takes before it has run: a time per epoch from a spec's multiply-accumulates, scaled by the
speed this device measured in its recent runs, the first guess of how many steps fit in a time budget, and the
batch a budget of too few steps trains at (budget_batch).

The constants are a fixed cost per image plus a cost per forward multiply-accumulate, one pair per precision the
steps compute in, each fitted on a CPU where it is the precision used (benchmarks/README.md names both);
measured_speed corrects them for any other machine from its own runs.
"""

from __future__ import annotations

import dataclasses
import math
import statistics

from . import metrics, resizing, runs, shapes, spec_io
from . import spec as specs
from .config import TrainConfig, config_from_dict, with_batch_size

# (seconds per image, seconds per forward multiply-accumulate) of a training epoch, validation included, each pair
# fitted where that precision is what the CPU trains in: mixed bfloat16 to fast's epochs on 2 AMD EPYC cores with
# AVX-512 BF16; float32 to the epochs of tiny, report-2-1, fast-small and fast on 2 plain AVX2 AMD EPYC cores, each
# within 7% (benchmarks/README.md). A GPU (mixed float16) starts from float32's and learns its own speed.
TRAIN_SECONDS = {"mixed_bfloat16": (0.094e-3, 0.0211e-9), "float32": (0.312e-3, 0.1122e-9)}


def epoch_seconds(model_spec: specs.ModelSpec, images: int, speed: float = 1.0,
                  config: TrainConfig | None = None, precision: str = "float32") -> float:
    """A time per training epoch in `precision` (a resolved TrainConfig.precision): the constants above, times
    `speed`, this machine's measured ratio to them (measured_speed); under progressive resizing
    (config.low_res_fraction), the mean epoch of the run. Raises SpecError for an invalid spec, or one that cannot
    take config's low_res_size."""
    per_image, per_mac = TRAIN_SECONDS.get(precision, TRAIN_SECONDS["float32"])

    def seconds(spec):
        return speed * images * (per_image + shapes.summary(spec)["macs"] * per_mac)

    full = seconds(model_spec)
    if config is None or not config.low_res_fraction:
        return full
    small = seconds(shapes.at_size(model_spec, config.low_res_size))
    return config.low_res_fraction * small + (1 - config.low_res_fraction) * full


def low_res_cost_ratio(model_spec: specs.ModelSpec, config: TrainConfig, precision: str = "float32") -> float:
    """A step on config.low_res_size images as a share of a full-size one, by the estimate: what the time budget
    prices a full-size step at before it has timed one."""
    small = shapes.at_size(model_spec, config.low_res_size)
    return epoch_seconds(small, 1, precision=precision) / epoch_seconds(model_spec, 1, precision=precision)


def budget_steps(model_spec: specs.ModelSpec, config: TrainConfig, images: int, steps_per_epoch: int,
                 precision: str = "float32") -> int:
    """A first guess of how many steps fit in the time budget; the job's TimeBudget callback corrects it from the
    steps it times."""
    epoch = epoch_seconds(model_spec, images, config=config, precision=precision)
    seconds_per_step = max(1e-3, epoch / steps_per_epoch)
    return max(1, int(config.minutes * 60 / seconds_per_step))


def budget_epochs(model_spec: specs.ModelSpec, config: TrainConfig, images: int, precision: str = "float32",
                  speed: float = 1.0) -> float:
    """How many epochs config.minutes holds by the estimate, at this machine's measured speed."""
    return config.minutes * 60 / epoch_seconds(model_spec, images, speed, config, precision)


def budget_batch(model_spec: specs.ModelSpec, config: TrainConfig, images: int, replicas: int = 1,
                 precision: str = "float32", speed: float = 1.0) -> TrainConfig:
    """config at the batch its time budget should train at: halved, to a quarter of config.batch_size at most,
    while the budget's first estimate holds fewer than config.min_steps steps (config.with_batch_size scales the
    learning rates with it); min_steps is then cleared, so that the same budget from the run's settings keeps that
    batch instead of halving it again. On a CPU a smaller batch costs a little throughput (6 epochs of 500 where 7
    of 1000 fit) and buys steps, which pays only where there are few: in 4 minutes on a plain AVX2 CPU (about 100
    steps of 1024), airbench94's SGD recipe scored 3 points more at batch 256 or 512 than at 1024, and Muon's half
    a point more at 500 in as short a budget on a CPU limited to AVX2, while at about 300 steps 500 lost
    (benchmarks/README.md). Unchanged without a budget or min_steps."""
    if config.minutes is None or config.min_steps is None:
        return config
    epochs = budget_epochs(model_spec, config, images, precision, speed)
    batch = config.batch_size
    while batch >= 2 and 4 * (batch // 2) >= config.batch_size \
            and epochs * -(-images // (batch * replicas)) < config.min_steps:
        batch //= 2
    if batch == config.batch_size:
        return config
    return dataclasses.replace(with_batch_size(config, batch), min_steps=None)


def budget_batch_here(model_spec: specs.ModelSpec, config: TrainConfig, images: int, info: dict, precision: str,
                      measured: tuple[float, int], replicas: int = 1) -> tuple[TrainConfig, str | None]:
    """budget_batch at the speed this device measured (`measured`, as measured_speed gives it, which the caller has
    already read for its own estimate; device.device_info's `info`), and a sentence saying what it changed (None
    when nothing). Not on a GPU that no run has measured: the constants are a CPU's, and would take its batch down
    for nothing."""
    speed, measured_runs = measured
    if info["gpus"] and not measured_runs:
        return config, None
    fitted = budget_batch(model_spec, config, images, replicas, precision, speed)
    if fitted is config:
        return config, None
    steps = budget_epochs(model_spec, config, images, precision, speed) * images / replicas
    return fitted, (f"A budget of {config.minutes:g} minutes holds about {steps / config.batch_size:.0f} steps of "
                    f"{config.batch_size} images here, fewer than the fewest steps for a budget (min_steps "
                    f"{config.min_steps}): training at batch {fitted.batch_size}, learning rate "
                    f"{fitted.learning_rate:.4g}, for about {steps / fitted.batch_size:.0f} steps.")


MIN_RATIO, MAX_RATIO = 1e-3, 1e3  # a GPU 1,000 times this CPU's constants, or a device 1,000 times slower


def measured_speed(device: str, precision: str, runs_dir=None, recent: int = 10) -> tuple[float, int]:
    """(ratio of measured to estimated epoch time, runs it comes from) on this device in this precision (a CPU's
    float32 and bfloat16 differ by more than their constants know): the median over the whole epochs of its most
    recent runs, the first epoch of each left out (it traces and builds). An epoch of progressive
    resizing is set against the estimate of its own mix of small and full-size steps. (1.0, 0) when no run has
    measured one yet, so that the constants alone are used. Every file is read leniently: a run that cannot be read
    is skipped."""
    ratios = []
    for row in runs.list_runs(runs_dir):
        if len(ratios) >= recent:
            break
        run_dir = runs.run_path(row["run_id"], runs_dir)
        config = runs.read_config(run_dir)
        splits = config.get("data_splits")
        images = splits.get("train") if isinstance(splits, dict) else 0
        # only a config.json that cannot be read; a torn status.json leaves the config's and the metrics' times good
        if row["state"] == "unreadable" or (config.get("device"), config.get("precision")) != (device, precision) \
                or not isinstance(images, int) or images < 1:
            continue
        train = config.get("train") if isinstance(config.get("train"), dict) else {}
        try:
            model_spec = spec_io.from_dict(config.get("spec"))
            # only the settings read here, so that a run saved with a setting since removed still counts
            settings = config_from_dict({k: train[k] for k in ("epochs", "minutes", "low_res_fraction",
                                                               "low_res_size") if k in train})
            full_epoch = epoch_seconds(model_spec, images, precision=precision)
            small_epoch = epoch_seconds(shapes.at_size(model_spec, settings.low_res_size), images,
                                        precision=precision) if settings.low_res_fraction else full_epoch
        except specs.SpecError:
            continue
        epochs = [r for r in metrics.epoch_records(run_dir) if r["time"] is not None]
        steps = max((r["step"] for r in epochs), default=0)
        if steps < 1:
            continue
        run_ratios = []
        for before, epoch in zip(epochs, epochs[1:]):
            if epoch["step"] == steps and epoch["time"] > before["time"] and epoch["epoch"] == before["epoch"] + 1:
                switch = resizing.switch_of(epoch, settings, settings.epochs * steps)
                low = min(1.0, max(0.0, (switch - before["epoch"] * steps) / steps))  # its share of small steps
                run_ratios.append((epoch["time"] - before["time"]) / (low * small_epoch + (1 - low) * full_epoch))
        # a ratio no device shows comes from a torn or edited record (times of +-1e308 made it infinite)
        run_ratios = [r for r in run_ratios if math.isfinite(r) and MIN_RATIO < r < MAX_RATIO]
        if run_ratios:
            ratios.append(statistics.median(run_ratios))
    return (statistics.median(ratios), len(ratios)) if ratios else (1.0, 0)
