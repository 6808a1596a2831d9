"""Training: TrainConfig -> a run directory, with model.fit over a tf.data pipeline.

One pipeline, top to bottom: load_data -> tf.data (shuffle, batch, flip + translate on whole batches, one-hot) ->
build_model under the precision policy and distribution strategy -> compile -> fit with the run's callbacks ->
save -> evaluate. The job owns its run directory and holds its lock; everybody else only reads it.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from . import callbacks, runs
from . import spec as specs

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "one-cycle")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("default", "mirrored", "multiworker")
# The Train page's rough time per epoch: a fixed cost per image plus a cost per forward multiply-accumulate, fitted
# to the two fast presets' mean epochs, validation included, on this project's 2-core CPU (bfloat16, batch 1024,
# 45,000 images; 2026-11-29): fast-small (19.8 M MACs) 23 s, fast (118 M MACs) 116 s. Real speed varies with batch
# size, layer shapes, precision and whatever else runs on the machine (smaller batches cost more per image; on this
# VM the same epoch sometimes takes 1.4-2x as long).
TRAIN_SECONDS_PER_IMAGE = 0.094e-3
TRAIN_SECONDS_PER_MAC = 0.0211e-9


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128            # images per step (per replica under a distribution strategy)
    optimizer: str = "adam"          # adam | adamw | sgd (Nesterov)
    learning_rate: float = 1e-3      # peak learning rate
    momentum: float = 0.9            # sgd only
    bias_lr_scale: float = 1.0       # sgd only: BatchNormalization betas learn this many times faster (airbench: 64)
    schedule: str = "constant"       # constant | cosine (decay to 0) | one-cycle (linear up, then linear down)
    warmup_epochs: float = 0.0       # linear warm-up, for cosine (from 0) and one-cycle (from start_fraction)
    start_fraction: float = 0.0      # one-cycle: learning rate at step 0, as a fraction of the peak
    end_fraction: float = 0.0        # one-cycle: learning rate at the last step, as a fraction of the peak
    weight_decay: float = 0.0        # decoupled (adamw, sgd) weight decay, multiplied by the learning rate
    label_smoothing: float = 0.0
    lookahead: bool = False          # airbench's lookahead: train on from a moving average of the weights
    tta: bool = False                # evaluate and classify on the image and its mirror image, averaged
    flip: bool = True                # random horizontal flip
    translate: int = 2               # random translation up to this many pixels (reflect padding + crop)
    seed: int = 0
    precision: str = "auto"          # auto: mixed_float16 on a GPU, mixed_bfloat16 on a CPU with bf16, else float32
    data: str = ""                   # data source ('' = CIFAR10_DATA or keras); see data.py
    limit: int | None = None         # use only the first N training images (quick tries)
    strategy: str = "default"        # default | mirrored (all local GPUs) | multiworker (TF_CONFIG)


def validate_config(config: TrainConfig) -> TrainConfig:
    def need(ok, field, allowed):
        if not ok:
            raise specs.SpecError(f"training setting {field} must be {allowed}, got {getattr(config, field)!r}.")

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    def is_num(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    need(is_int(config.epochs) and 1 <= config.epochs <= 1000, "epochs", "an integer from 1 to 1000")
    need(is_int(config.batch_size) and 1 <= config.batch_size <= 4096, "batch_size", "an integer from 1 to 4096")
    need(config.optimizer in OPTIMIZERS, "optimizer", " or ".join(OPTIMIZERS))
    need(is_num(config.learning_rate) and 0 < config.learning_rate <= 10, "learning_rate", "a number in (0, 10]")
    need(config.schedule in SCHEDULES, "schedule", " or ".join(SCHEDULES))
    need(is_num(config.warmup_epochs) and 0 <= config.warmup_epochs <= config.epochs, "warmup_epochs",
         "a number from 0 to epochs")
    need(is_num(config.momentum) and 0 <= config.momentum < 1, "momentum", "a number in [0, 1)")
    need(is_num(config.bias_lr_scale) and 0 < config.bias_lr_scale <= 1000, "bias_lr_scale", "a number in (0, 1000]")
    need(is_num(config.start_fraction) and 0 <= config.start_fraction <= 1, "start_fraction", "a number in [0, 1]")
    need(is_num(config.end_fraction) and 0 <= config.end_fraction <= 1, "end_fraction", "a number in [0, 1]")
    need(is_num(config.weight_decay) and 0 <= config.weight_decay < 1, "weight_decay", "a number in [0, 1)")
    need(is_num(config.label_smoothing) and 0 <= config.label_smoothing < 1, "label_smoothing", "a number in [0, 1)")
    need(isinstance(config.flip, bool), "flip", "true or false")
    need(isinstance(config.lookahead, bool), "lookahead", "true or false")
    need(isinstance(config.tta, bool), "tta", "true or false")
    need(is_int(config.translate) and 0 <= config.translate <= 8, "translate", "an integer from 0 to 8 pixels")
    need(is_int(config.seed), "seed", "an integer")
    need(config.precision in PRECISIONS, "precision", " or ".join(PRECISIONS))
    need(isinstance(config.data, str), "data", "a data source")
    need(config.limit is None or (is_int(config.limit) and config.limit >= 1), "limit", "empty or a positive integer")
    need(config.strategy in STRATEGIES, "strategy", " or ".join(STRATEGIES))
    if config.strategy == "multiworker" and not os.environ.get("TF_CONFIG"):
        raise specs.SpecError("training setting strategy 'multiworker' needs the TF_CONFIG environment variable "
                              "(the cluster's workers and this one's index) on every machine; see the README.")
    return config


def with_epochs(config: TrainConfig, epochs: int) -> TrainConfig:
    """The same recipe over another number of epochs: the warm-up keeps its share of the schedule."""
    warmup = round(config.warmup_epochs * epochs / config.epochs, 2) if config.epochs else config.warmup_epochs
    return dataclasses.replace(config, epochs=epochs, warmup_epochs=warmup)


def estimate_epoch_seconds(model_spec: specs.ModelSpec, images: int) -> float:
    """A rough time per training epoch (see TRAIN_SECONDS_PER_IMAGE). Raises SpecError for an invalid spec."""
    macs = specs.summary(model_spec)["macs"]
    return images * (TRAIN_SECONDS_PER_IMAGE + macs * TRAIN_SECONDS_PER_MAC)


def config_from_dict(data: dict) -> TrainConfig:
    allowed = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise specs.SpecError(f"unknown training setting(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}.")
    return validate_config(TrainConfig(**data))


def cpu_supports_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def device_info() -> dict:
    """Which device training uses and in which precision, e.g. {'device': 'GPU: NVIDIA ...', 'precision': ...}."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        name = details.get("device_name", gpus[0].name)
        return {"device": f"GPU: {name}" + (f" (x{len(gpus)})" if len(gpus) > 1 else ""), "gpus": len(gpus),
                "precision": "mixed_float16"}
    cpu = platform.processor() or "CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"device": f"CPU: {cpu} ({os.cpu_count()} cores)", "gpus": 0,
            "precision": "mixed_bfloat16" if cpu_supports_bf16() else "float32"}


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


def make_optimizer(config: TrainConfig, steps_per_epoch: int):
    import keras

    from .schedules import BiasScaledSGD, OneCycle

    total = max(1, config.epochs * steps_per_epoch)
    warmup = int(config.warmup_epochs * steps_per_epoch)
    if config.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else config.learning_rate, max(1, total - warmup), alpha=0.0,
            warmup_target=config.learning_rate if warmup else None, warmup_steps=warmup)
    elif config.schedule == "one-cycle":
        lr = OneCycle(config.learning_rate, total, warmup or max(1, total // 5), config.start_fraction,
                      config.end_fraction)
    else:
        lr = config.learning_rate
    if config.optimizer == "sgd":
        return BiasScaledSGD(lr, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay or None,
                             bias_lr_scale=config.bias_lr_scale)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(lr, weight_decay=config.weight_decay or None)


def resolve_precision(config: TrainConfig) -> str:
    return device_info()["precision"] if config.precision == "auto" else config.precision


def make_strategy(name: str):
    """mirrored: one replica per local GPU (or, with no GPU, per logical CPU device; CIFAR_CORE_VIRTUAL_CPUS=N
    splits the CPU into N of them, which is how the tests run it on a CPU-only machine)."""
    import tensorflow as tf

    virtual = int(os.environ.get("CIFAR_CORE_VIRTUAL_CPUS") or 0)
    if virtual > 1 and not tf.config.list_physical_devices("GPU"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * virtual)
        except RuntimeError:
            pass  # already initialised with the same split
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy(devices=[d.name for d in devices])
    if name == "multiworker":  # the cluster and this worker's place in it come from TF_CONFIG
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def work_around_multiworker_fit(model) -> None:
    """Keras 3.15's fit fails under MultiWorkerMirroredStrategy (keras-team/keras#20585, open): it reduces the
    first, nested batch with strategy.reduce, which takes no nests, and it averages each step's scalar logs over an
    axis 0 they do not have. The two smallest changes that let fit run: the model does not remember the strategy
    (fit then builds inside the strategy's scope instead of from that batch, and finds the strategy from the
    scope), and the steps' logs get that axis. tests/test_distributed.py trains two workers with them."""
    import keras

    model._distribute_strategy = None
    for name in ("train_step", "test_step"):
        step = getattr(model, name)
        setattr(model, name, lambda data, step=step: {k: keras.ops.expand_dims(v, 0) for k, v in step(data).items()})


def train(model_spec: specs.ModelSpec, config: TrainConfig, run_dir: Path, *, resume: bool = False,
          log=print) -> Path:
    """Trains into run_dir (created if needed) and returns it. Raises SpecError for an invalid spec or config
    before anything is created, RunError if another job holds the run."""
    import numpy as np

    specs.validate(model_spec)
    validate_config(config)
    run_dir = Path(run_dir)
    if resume and not (run_dir / "config.json").exists():
        raise runs.RunError(f"There is no run at {run_dir} to resume.")
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = runs.RunLock(run_dir).acquire()
    signal.signal(signal.SIGTERM, callbacks.on_sigterm)
    try:
        (run_dir / "stop").unlink(missing_ok=True)
        return _train_locked(model_spec, config, run_dir, resume, log, np)
    finally:
        lock.release()


def _train_locked(model_spec, config, run_dir, resume, log, np):
    from . import data as datasets

    runs.write_status(run_dir, state="starting", pid=os.getpid(), error=None)
    try:
        import keras
        import tensorflow as tf

        info = device_info()
        precision = resolve_precision(config)
        log(f"Training on {info['device']} with {precision} precision.")
        dataset = datasets.load_data(config.data or None, limit=config.limit)
        if dataset.num_classes != model_spec.num_classes:
            model_spec = dataclasses.replace(model_spec, num_classes=dataset.num_classes)
        log(f"Data: {len(dataset.x_train)} training and {len(dataset.x_val)} validation images from "
            f"{dataset.source}.")

        strategy = make_strategy(config.strategy)
        global_batch = config.batch_size * strategy.num_replicas_in_sync
        steps_per_epoch = -(-len(dataset.x_train) // global_batch)
        rows = specs.infer(model_spec)
        if not resume or not (run_dir / "config.json").exists():
            runs.write_json(run_dir / "config.json", {
                "spec": specs.to_dict(model_spec), "train": dataclasses.asdict(config),
                "params": sum(r.params for r in rows), "class_names": list(dataset.class_names),
                "data_source": dataset.source, "device": info["device"], "precision": precision,
                "replicas": strategy.num_replicas_in_sync, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__},
            })

        backup_dir = run_dir / "backup"
        done_epochs, note = callbacks.restore_backup_metadata(backup_dir) if resume else (0, None)
        if note:
            log(note)
        if not resume:
            shutil.rmtree(backup_dir, ignore_errors=True)
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        kept = runs.truncate_metrics(run_dir, done_epochs)
        time_offset = max((r.get("time", 0) for r in kept if r.get("kind") == "epoch"), default=0.0)
        if resume:
            log(f"Resuming after epoch {done_epochs}.")

        keras.utils.set_random_seed(config.seed)
        keras.mixed_precision.set_global_policy(precision)
        with strategy.scope():
            from .builder import build_model

            model = build_model(model_spec, dataset.x_train)
            model.compile(optimizer=make_optimizer(config, steps_per_epoch),
                          loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                          metrics=["accuracy"])
        if config.strategy == "multiworker":
            work_around_multiworker_fit(model)
        train_ds = make_dataset(dataset.x_train, dataset.y_train, dataset.num_classes, global_batch,
                                training=True, config=config)
        val_ds = make_dataset(dataset.x_val, dataset.y_val, dataset.num_classes, max(global_batch, 256),
                              training=False, config=config)

        logger = callbacks.make_run_logger(run_dir, steps_per_epoch, config.epochs, time_offset, log)
        fit_callbacks = [callbacks.make_lookahead(config.epochs * steps_per_epoch)] if config.lookahead else []
        fit_callbacks += [
            # raise_error=True: the default only sets stop_training, and later callbacks would then save the
            # NaN weights over the last good model.
            keras.callbacks.TerminateOnNaN(raise_error=True),
            # The logger records an epoch (its metrics point and model.keras) before the backup marks it done: a
            # crash between the two then makes resume redo that epoch, instead of skipping an epoch never recorded.
            logger,
            callbacks.make_backup(backup_dir, logger),
        ]
        fit_callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False))
        runs.write_status(run_dir, state="running", epoch=done_epochs, epochs=config.epochs, step=0,
                          steps_per_epoch=steps_per_epoch, device=info["device"], precision=precision)
        with strategy.scope():  # where fit finds the strategy when work_around_multiworker_fit has hidden it
            model.fit(train_ds, epochs=config.epochs, validation_data=val_ds, callbacks=fit_callbacks, verbose=0,
                      shuffle=False)  # the dataset shuffles itself, with the run's seed

        if logger.stopped:
            callbacks.save_model_atomic(model, run_dir / "model.keras")
            runs.write_status(run_dir, state="stopped")
            log(f"Stopped; model saved. Resume with: python -m cifar_core train --run-dir {run_dir} --resume")
            return run_dir
        callbacks.save_model_atomic(model, run_dir / "model.keras")
        from .evaluate import evaluate_arrays, model_fingerprint, store_eval
        from .predict import load_model

        # Evaluate the saved file, as every later reader will, and outside the distribution strategy (under
        # MirroredStrategy predict_on_batch returned one row per replica and image).
        x_eval, y_eval, split = dataset.split("test")
        saved = load_model(run_dir / "model.keras")
        result = evaluate_arrays(saved, x_eval, y_eval, dataset.class_names, split, dataset.source, tta=config.tta)
        result["model_sha256"] = model_fingerprint(run_dir / "model.keras")
        store_eval(run_dir, result)
        log(f"{split} accuracy {result['accuracy']:.4f} on {result['n']} images.")
        runs.write_status(run_dir, state="finished")
        return run_dir
    except RuntimeError as e:
        if "NaN" in str(e) or "nan" in str(e).lower():
            _record_failure(run_dir, "NaN loss: training diverged; the model kept is the last one with finite "
                            "weights. Try a lower learning rate.")
        else:
            _record_failure(run_dir, _sentence(e))
        raise
    except MemoryError as e:
        _record_failure(run_dir, "Out of memory: use a smaller batch size or model.")
        raise RuntimeError("Out of memory: use a smaller batch size or model.") from e
    except BaseException as e:
        _record_failure(run_dir, str(e) if isinstance(e, runs.DiskFullError) else _sentence(e))
        raise


def _record_failure(run_dir: Path, error: str) -> None:
    """state failed with its reason; on a full disk even that write can fail, and the original error must still
    reach the caller (the run then reads as interrupted once the job's lock is gone)."""
    try:
        runs.write_status(run_dir, state="failed", error=error)
    except OSError:
        pass


def _sentence(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}"[:500] if text else type(e).__name__
