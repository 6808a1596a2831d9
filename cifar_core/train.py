"""Training: a spec and a TrainConfig -> a run directory, with model.fit over a tf.data pipeline.

One pipeline, top to bottom (train):
    load the data -> create the run -> take its lock -> device, precision, strategy -> a time budget's batch ->
    record what the job found -> prepare a resume -> build and compile -> fit with the run's callbacks -> save ->
    evaluate the saved file.
The job owns its run directory and holds its lock; everybody else only reads it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

from . import callbacks, estimate, files, metrics, resizing, runs, shapes
from . import config as configs
from . import data as datasets
from . import spec as specs
from .config import TrainConfig, validate_config
from .device import device_info, make_strategy, resolve_precision, work_around_multiworker_fit

MAX_BUDGET_EPOCHS = 1000  # under a time budget, fit's epoch limit: the budget ends it long before


def make_dataset(x, y, num_classes: int, batch_size: int, *, training: bool, config: TrainConfig):
    """uint8 images -> batches of (float32 images in [0, 255], one-hot labels). Augmentation runs on whole batches
    (one gather per axis), so it costs little next to a training step."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if training:
        ds = ds.shuffle(len(x), seed=config.seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=False)
    pad = config.translate if training else 0
    flip = config.flip and training
    seed = tf.random.Generator.from_seed(config.seed) if training else None

    def prepare(images, labels):
        images = tf.cast(images, tf.float32)
        if flip:
            mirrored = seed.uniform([tf.shape(images)[0], 1, 1, 1]) < 0.5
            images = tf.where(mirrored, tf.reverse(images, axis=[2]), images)
        if pad:
            n, size = tf.shape(images)[0], tf.shape(images)[1]
            padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
            shifts = seed.uniform_full_int([n, 2], dtype=tf.int32) % (2 * pad + 1)
            rows = shifts[:, :1] + tf.range(size)[None, :]
            cols = shifts[:, 1:] + tf.range(size)[None, :]
            images = tf.gather(padded, rows, axis=1, batch_dims=1)
            images = tf.gather(images, cols, axis=2, batch_dims=1)
        return images, tf.one_hot(labels, num_classes)

    return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def make_schedule(config: TrainConfig, steps_per_epoch: int, total_steps: int | None = None):
    """The learning rate: a number (constant) or a Keras schedule over total_steps (default: the epochs' steps);
    the warm-up keeps its share of the epochs."""
    import keras

    from .schedules import OneCycle

    total = max(1, total_steps or config.epochs * steps_per_epoch)
    warmup = int(config.warmup_epochs / config.epochs * total)
    if config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else config.learning_rate, max(1, total - warmup), alpha=0.0,
            warmup_target=config.learning_rate if warmup else None, warmup_steps=warmup)
    if config.schedule == "one-cycle":
        return OneCycle(config.learning_rate, total, max(1, warmup), config.start_fraction,
                        config.end_fraction)
    return config.learning_rate


def make_optimizer(config: TrainConfig, steps_per_epoch: int, schedule=None):
    import keras

    from .schedules import BiasScaledSGD, MuonSGD

    lr = make_schedule(config, steps_per_epoch) if schedule is None else schedule
    if config.optimizer == "muon":
        return MuonSGD(lr, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay or None,
                       bias_lr_scale=config.bias_lr_scale, filter_learning_rate=config.filter_learning_rate,
                       peak_learning_rate=config.learning_rate)
    if config.optimizer == "sgd":
        return BiasScaledSGD(lr, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay or None,
                             bias_lr_scale=config.bias_lr_scale)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(lr, weight_decay=config.weight_decay or None)


# ---- the steps of a training job

def load_dataset(config: TrainConfig, log) -> datasets.Dataset:
    dataset = datasets.load_data(config.data or None, limit=config.limit, log=log)
    log(f"Data: {len(dataset.x_train)} training and {len(dataset.x_val)} validation images from {dataset.source}.")
    return dataset


def fit_spec_to_data(model_spec: specs.ModelSpec, dataset: datasets.Dataset,
                     config: TrainConfig | None = None) -> specs.ModelSpec:
    """The spec with the data's number of classes; a data source the spec cannot take is refused by its numbers,
    and so is progressive resizing that the spec cannot take (resizing.check)."""
    if not 2 <= dataset.num_classes <= specs.MAX_CLASSES:
        raise datasets.DataError(f"The data source has {dataset.num_classes:,} classes; this tool trains on 2 to "
                                 f"{specs.MAX_CLASSES:,}.")
    if tuple(model_spec.input_shape) != dataset.x_train.shape[1:]:
        raise specs.SpecError(f"input_shape {tuple(model_spec.input_shape)} does not match the data's images, "
                              f"which are {' × '.join(map(str, dataset.x_train.shape[1:]))}.")
    if config is not None:
        resizing.check(model_spec, config)
    return shapes.validate(dataclasses.replace(model_spec, num_classes=dataset.num_classes))


def record_facts(run_dir: Path, dataset: datasets.Dataset, info: dict, precision: str, replicas: int) -> None:
    import keras
    import numpy as np
    import tensorflow as tf

    runs.write_config(run_dir, class_names=list(dataset.class_names), data_source=dataset.source,
                      data_splits={"train": len(dataset.x_train), "val": len(dataset.x_val),
                                   "test": 0 if dataset.x_test is None else len(dataset.x_test)},
                      device=info["device"], precision=precision, replicas=replicas,
                      versions={"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__})


def fit_batch_to_budget(run_dir: Path, model_spec, config: TrainConfig, images: int, info: dict, precision: str,
                        replicas: int, log) -> TrainConfig:
    """A new run's batch for its time budget (estimate.budget_batch_here), recorded in its config.json: the
    settings it trains with, and the sentence saying why (`budget_batch`)."""
    speed = estimate.measured_speed(info["device"], precision, run_dir.parent)
    fitted, change = estimate.budget_batch_here(model_spec, config, images, info, precision, speed, replicas)
    if change:
        runs.write_config(run_dir, train=configs.to_dict(fitted), budget_batch=change)
        log(change)
    return fitted


def prepare_resume(run_dir: Path, resume: bool, log) -> tuple[int, float]:
    """(completed epochs, seconds already trained): on resume, from the backup (repaired or dropped when torn);
    on a new run, a clean slate. metrics.jsonl then holds each completed epoch exactly once."""
    backup_dir = run_dir / "backup"
    if not resume:
        shutil.rmtree(backup_dir, ignore_errors=True)
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        return 0, 0.0
    done_epochs, note = callbacks.restore_backup_metadata(backup_dir)
    if note:
        log(note)
    kept = metrics.truncate_metrics(run_dir, done_epochs)
    log(f"Resuming after epoch {done_epochs}.")
    return done_epochs, max((r["time"] or 0.0 for r in kept), default=0.0)


def build_and_compile(model_spec, config: TrainConfig, dataset, strategy, steps_per_epoch: int, schedule):
    import keras

    from .builder import build_model

    with strategy.scope():
        model = build_model(model_spec, dataset.x_train, any_size=bool(config.low_res_fraction))
        model.compile(optimizer=make_optimizer(config, steps_per_epoch, schedule),
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                      metrics=["accuracy"])
    if config.strategy == "multiworker":
        work_around_multiworker_fit(model)
    return model


def make_callbacks(run_dir: Path, config: TrainConfig, steps_per_epoch: int, time_offset: float, log, schedule,
                   low_res=None, saved_as=None):
    """The fit's callbacks, in order. With a time budget, TimeBudget goes first: it moves the schedule's end (and the
    lookahead's) to where this machine's speed says the budget ends, and stops the fit there. low_res: (switch
    variable, a low-resolution step's estimated cost as a share of a full one) under progressive resizing; the
    budget moves the switch with the schedule. saved_as: the model the logger saves (see callbacks.save_model_atomic).
    """
    import keras

    fit_callbacks, epochs, total_steps = [], config.epochs, config.epochs * steps_per_epoch
    if config.minutes is not None:
        switching = None
        if low_res is not None:
            switch, cost_ratio = low_res
            switching = (config.low_res_fraction, int(switch.numpy()), switch.assign, cost_ratio)
        budget = callbacks.make_time_budget(config.minutes * 60, time_offset, steps_per_epoch,
                                            getattr(schedule, "set_length", None), low_res=switching)
        fit_callbacks.append(budget)
        epochs, total_steps = budget.epochs_estimate, budget.current_total
    logger = callbacks.make_run_logger(run_dir, steps_per_epoch, epochs, time_offset, log, saved_as=saved_as,
                                       switch=None if low_res is None else low_res[0])
    if config.lookahead:
        fit_callbacks.append(callbacks.make_lookahead(total_steps))
    fit_callbacks += [
        # raise_error=True: the default only sets stop_training, and later callbacks would then save the NaN weights
        # over the last good model.
        keras.callbacks.TerminateOnNaN(raise_error=True),
        # The logger records an epoch (its metrics point and model.keras) before the backup marks it done: a crash
        # between the two then makes resume redo that epoch, instead of skipping an epoch never recorded.
        logger,
        callbacks.make_backup(run_dir / "backup", logger),
        keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False),
    ]
    return logger, fit_callbacks


def evaluate_saved(run_dir: Path, dataset, config: TrainConfig, log) -> None:
    """Evaluates the saved file, as every later reader will, outside the distribution strategy (under
    MirroredStrategy predict_on_batch returned one row per replica and image)."""
    from .evaluate import data_fingerprint, evaluate_arrays, model_fingerprint, store_eval
    from .models import load_model

    x_eval, y_eval, split = dataset.split("test")
    saved = load_model(run_dir / "model.keras")
    result = evaluate_arrays(saved, x_eval, y_eval, dataset.class_names, split, dataset.source, tta=config.tta)
    result["model_sha256"] = model_fingerprint(run_dir / "model.keras")
    result["data_sha256"] = data_fingerprint(x_eval, y_eval, dataset.class_names)  # so Evaluate reuses it
    store_eval(run_dir, result)
    log(f"{split} accuracy {result['accuracy']:.4f} on {result['n']} images ({split} split).")


# ---- the job

def train(model_spec: specs.ModelSpec, config: TrainConfig, run_dir: Path, *, resume: bool = False, log=print,
          name: str | None = None) -> Path:
    """Trains into run_dir and returns it. A new run's data is loaded before its folder is created, so a bad spec,
    config, folder or data source is refused (SpecError, RunError, DataError) with nothing created. run_dir may be a
    fresh run that jobs.start_job created; any other folder that holds files is refused."""
    shapes.validate(model_spec)
    validate_config(config)
    if name:
        runs.check_run_name(name)
    run_dir = Path(run_dir)
    dataset = None
    if resume:
        if not (run_dir / "config.json").exists():
            raise runs.RunError(f"There is no run at {run_dir} to resume.")
        if runs.read_status(run_dir).get("state") == "finished":  # resuming would train it past its end again
            log(f"The run {run_dir.name} has finished; there is nothing to resume (start a new run to train longer).")
            return run_dir
    elif not runs.is_fresh(run_dir):
        runs.check_new_run_dir(run_dir)
        dataset = load_dataset(config, log)
        fit_spec_to_data(model_spec, dataset, config)
        runs.create_run(run_dir, model_spec, config, name=name)
    lock = runs.RunLock(run_dir).acquire()
    try:
        if not resume:  # a fresh run is trained as its record says, or not at all (another job's run, say)
            runs.check_record(run_dir, model_spec, config)
    except runs.RunError:
        lock.release()
        raise
    callbacks.install_stop_signals()
    try:
        return _train_locked(model_spec, config, run_dir, resume, log, dataset)
    finally:
        (run_dir / "stop").unlink(missing_ok=True)  # honoured (or the job ended): a later resume starts afresh
        lock.release()


def _train_locked(model_spec, config, run_dir, resume, log, dataset):
    runs.write_status(run_dir, state="starting", pid=os.getpid(), error=None, failed_on=None)
    try:
        files.clear_leftovers(run_dir)
        if runs.stop_requested(run_dir):  # Stop pressed before the job began
            runs.write_status(run_dir, state="stopped")
            log("Stopped before the first step.")
            return run_dir
        try:
            dataset = dataset or load_dataset(config, log)
            model_spec = fit_spec_to_data(model_spec, dataset, config)
        except (datasets.DataError, specs.SpecError) as e:
            _record_failure(run_dir, str(e), failed_on="data")
            raise
        import keras

        info, precision = device_info(), resolve_precision(config.precision)
        log(f"Training on {info['device']} with {precision} precision.")
        strategy = make_strategy(config.strategy)
        if not resume:  # a resumed run keeps the batch its config.json already records
            config = fit_batch_to_budget(run_dir, model_spec, config, len(dataset.x_train), info, precision,
                                         strategy.num_replicas_in_sync, log)
        global_batch = config.batch_size * strategy.num_replicas_in_sync
        steps_per_epoch = -(-len(dataset.x_train) // global_batch)
        record_facts(run_dir, dataset, info, precision, strategy.num_replicas_in_sync)
        done_epochs, time_offset = prepare_resume(run_dir, resume, log)

        keras.utils.set_random_seed(config.seed)
        keras.mixed_precision.set_global_policy(precision)
        with strategy.scope():
            total_steps = None if config.minutes is None else \
                estimate.budget_steps(model_spec, config, len(dataset.x_train), steps_per_epoch, precision)
            schedule = make_schedule(config, steps_per_epoch, total_steps)
        model = build_and_compile(model_spec, config, dataset, strategy, steps_per_epoch, schedule)
        # One iterator for the whole fit (repeat, and fit's steps_per_epoch): a new one each epoch stalled the
        # first step of an epoch by up to 40 s with `fast` (benchmarks/README.md).
        train_ds = make_dataset(dataset.x_train, dataset.y_train, dataset.num_classes, global_batch, training=True,
                                config=config).repeat()
        val_ds = make_dataset(dataset.x_val, dataset.y_val, dataset.num_classes, max(global_batch, 256),
                              training=False, config=config)
        low_res = saved_as = None
        if config.low_res_fraction:
            train_ds, switch, saved_as = resizing.progressive_resizing(
                model_spec, config, train_ds, total_steps or config.epochs * steps_per_epoch,
                done_epochs * steps_per_epoch, run_dir, log)
            low_res = (switch, estimate.low_res_cost_ratio(model_spec, config, precision))
        logger, fit_callbacks = make_callbacks(run_dir, config, steps_per_epoch, time_offset, log, schedule,
                                               low_res, saved_as)
        epochs = config.epochs if config.minutes is None else MAX_BUDGET_EPOCHS
        runs.write_status(run_dir, state="running", epoch=done_epochs, epochs=epochs, step=0,
                          steps_per_epoch=steps_per_epoch, device=info["device"], precision=precision,
                          budget_s=None if config.minutes is None else config.minutes * 60)
        with strategy.scope():  # where fit finds the strategy when work_around_multiworker_fit has hidden it
            model.fit(train_ds, epochs=epochs, steps_per_epoch=steps_per_epoch, validation_data=val_ds,
                      callbacks=fit_callbacks, verbose=0,
                      shuffle=False)  # the dataset shuffles itself, with the run's seed

        if logger.stopped:
            # The model of the last whole epoch stays, the one whose validation accuracy the run reports (saving
            # the weights of the stopped epoch's first steps had made Evaluate disagree with it); resume redoes
            # that epoch from the backup, so nothing is lost. Stopped within the first epoch, its steps are kept.
            if not metrics.epoch_records(run_dir):  # no whole epoch yet (a resumed one may have saved a partial)
                callbacks.save_model_atomic(model, run_dir / "model.keras", saved_as)
            runs.write_status(run_dir, state="stopped")
            log(f"Stopped; the last whole epoch's model is kept. Resume with: python -m cifar_core train --run-dir "
                f"{run_dir} --resume")
            return run_dir
        callbacks.save_model_atomic(model, run_dir / "model.keras", saved_as)
        evaluate_saved(run_dir, dataset, config, log)
        runs.write_status(run_dir, state="finished")
        return run_dir
    except (datasets.DataError, specs.SpecError):
        raise
    except RuntimeError as e:
        if "nan" in str(e).lower():
            _record_failure(run_dir, "NaN loss: training diverged; the model kept is the last one with finite "
                            "weights. Try a lower learning rate.")
        else:
            _record_failure(run_dir, _sentence(e))
        raise
    except MemoryError as e:
        _record_failure(run_dir, "Out of memory: use a smaller batch size or model.")
        raise RuntimeError("Out of memory: use a smaller batch size or model.") from e
    except BaseException as e:
        _record_failure(run_dir, _sentence(e))
        raise


def _record_failure(run_dir: Path, error: str, failed_on: str | None = None) -> None:
    """state failed with its reason; on a full disk even that write can fail, and the original error must still
    reach the caller (the run then reads as interrupted once the job's lock is gone)."""
    try:
        runs.write_status(run_dir, state="failed", error=error, failed_on=failed_on, finished=time.time())
    except OSError:
        pass


def _sentence(e: BaseException) -> str:
    if isinstance(e, files.DiskFullError):
        return str(e)
    if files.is_disk_full(e):  # h5py and TensorFlow say it in their own words
        return str(files.DiskFullError(getattr(e, "filename", None) or "a file"))
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}"[:500] if text else type(e).__name__
