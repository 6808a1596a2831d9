"""The header line every benchmark prints before its figures: the machine and the settings a figure depends on.

A figure means little without its machine: a small VM's speed wanders, and bfloat16 only pays on a CPU with AVX-512
BF16 or AMX. benchmarks/README.md records a figure with the CPU and date this line gives. The engine is the
installed cifar_core (`pip install -e .` in the clone, as the README's commands do).
"""

from __future__ import annotations

import datetime
import json
import os
import statistics
import time


def header(precision: str) -> dict:
    """The machine as TensorFlow in this process sees it. A thread count of 0 means TensorFlow's default (one
    thread per core); TF_ENABLE_ONEDNN_OPTS is None when unset, and TensorFlow then uses oneDNN on Linux x86."""
    import tensorflow as tf

    from cifar_core import device

    return {
        "cpu": device.cpu_model(),
        "cores": os.cpu_count(),
        "cpu_bf16": device.cpu_supports_bf16(),  # AVX-512 BF16 or AMX, what mixed bfloat16 needs to pay
        "precision": precision,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        # Set to AVX2 on a CPU with AVX-512, oneDNN's kernels are those an AVX2 CPU runs: an emulation, named so.
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "tensorflow": tf.__version__,
        "date": datetime.date.today().isoformat(),
    }


def print_figures(precision: str, figures: dict) -> None:
    """Two JSON lines: the machine header, then the figures measured on it."""
    print(json.dumps({"machine": header(precision)}))
    print(json.dumps(figures), flush=True)


def synthetic_images(count: int, num_classes: int = 10):
    """(x, y): random uint8 images and labels, the same on every run (seed 0), for the throughput benchmarks."""
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8), rng.integers(0, num_classes, count)


def compiled_preset(preset, policy: str, x, steps_per_epoch: int):
    """The preset's model built (its whitening adapted to x) and compiled as its training compiles it, under a
    precision policy."""
    import keras

    from cifar_core.builder import build_model
    from cifar_core.train import make_optimizer

    keras.mixed_precision.set_global_policy(policy)
    model = build_model(preset.spec, x)
    model.compile(optimizer=make_optimizer(preset.train, steps_per_epoch),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=preset.train.label_smoothing))
    return model


def step_clock():
    """A Keras callback that stamps the end of every training step, for steady_rate."""
    import time

    import keras

    class StepClock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.stamps = []

        def on_train_batch_end(self, batch, logs=None):
            self.stamps.append(time.perf_counter())

    return StepClock()


def fit_stamps(model, *data, callbacks=(), **fit_options):
    """A loop for alternate: one epoch of model.fit on data, returning the end of every step's time stamp."""
    clock = step_clock()
    model.fit(*data, verbose=0, callbacks=[*callbacks, clock], **fit_options)
    return clock.stamps


def alternate(loops: dict, rounds: int, images: int, batch_size: int) -> dict:
    """Runs each loop (a name and a function that trains one epoch of `images` and returns its steps' end time
    stamps) once a round, in turn, so that all see the same machine state; prints each round's rates. Returns the
    medians of whole rounds and of steady rates (steady_rate), and the first loop's ratios to the second."""
    rates = {name: [] for name in loops}
    steady = {name: [] for name in loops}
    for _ in range(rounds):
        for name, loop in loops.items():
            start = time.perf_counter()
            stamps = loop()
            rates[name].append(images / (time.perf_counter() - start))
            steady[name].append(steady_rate(stamps, images, batch_size))
        print({k: round(v[-1]) for k, v in rates.items()}, "steady", {k: round(v[-1]) for k, v in steady.items()},
              flush=True)
    medians = {k: statistics.median(v) for k, v in rates.items()}
    steady_medians = {k: statistics.median(v) for k, v in steady.items()}
    first, second = list(loops)[:2]
    return {"images_per_s": {k: round(v, 1) for k, v in medians.items()},
            "ratio": round(medians[first] / medians[second], 3),
            "steady_images_per_s": {k: round(v, 1) for k, v in steady_medians.items()},
            "steady_ratio": round(steady_medians[first] / steady_medians[second], 3)}


def steady_rate(stamps, images: int, batch_size: int) -> float:
    """Images a second from the end of a round's first step to the end of its last: what a long training run sees.
    The first step also pays for what each new fit or loop sets up once (a new tf.data iterator took seconds with
    `fast`), which one training run pays only once (benchmarks/README.md)."""
    sizes = [min(batch_size, images - start) for start in range(0, images, batch_size)]
    return sum(sizes[1:len(stamps)]) / (stamps[-1] - stamps[0])
