"""Which device trains and predicts, in which precision, under which distribution strategy.

The one answer to "which precision does this machine use" (training, the serving copy and the pages all ask here):
mixed float16 on a GPU, mixed bfloat16 on a CPU with AVX-512 BF16 or AMX, float32 otherwise.
"""

from __future__ import annotations

import functools
import os
import platform
import threading
from pathlib import Path


def cpu_model() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "CPU"


# oneDNN's instruction sets below bfloat16's: with ONEDNN_MAX_CPU_ISA set to one of them, oneDNN runs the kernels of
# such a CPU, and bfloat16 would then be emulated, slower than float32.
ISAS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


def cpu_supports_bf16() -> bool:
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in ISAS_WITHOUT_BF16:
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


_IMPORT_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def device_info() -> dict:
    """{'device': 'GPU: NVIDIA ...' or 'CPU: ... (2 cores)', 'gpus': count, 'precision': ..., 'bf16': bool}."""
    with _IMPORT_LOCK:  # two threads importing TensorFlow at once can fail one (Python's import lock: a deadlock)
        import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        name = details.get("device_name", gpus[0].name)
        return {"device": f"GPU: {name}" + (f" (x{len(gpus)})" if len(gpus) > 1 else ""), "gpus": len(gpus),
                "precision": "mixed_float16", "bf16": False}
    bf16 = cpu_supports_bf16()
    return {"device": f"CPU: {cpu_model()} ({os.cpu_count()} cores)", "gpus": 0,
            "precision": "mixed_bfloat16" if bf16 else "float32", "bf16": bf16}


def resolve_precision(precision: str) -> str:
    """A TrainConfig.precision made concrete: 'auto' becomes this device's precision."""
    return device_info()["precision"] if precision == "auto" else precision


def make_strategy(name: str):
    """default: no distribution; mirrored: one replica per local GPU (or, with no GPU, per logical CPU device;
    CIFAR_CORE_VIRTUAL_CPUS=N splits the CPU into N of them, which is how the tests run it on a CPU-only machine);
    multiworker: the cluster of TF_CONFIG."""
    import tensorflow as tf

    raw = os.environ.get("CIFAR_CORE_VIRTUAL_CPUS", "").strip()  # a test's knob: anything but 2 to 64 is no split
    virtual = int(raw) if raw.isascii() and raw.isdigit() and int(raw) <= 64 else 0
    if virtual > 1 and not tf.config.list_physical_devices("GPU"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * virtual)
        except RuntimeError:
            pass  # already initialised with the same split
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy(devices=[d.name for d in devices])
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def work_around_multiworker_fit(model) -> None:
    """Keras 3.15's fit fails under MultiWorkerMirroredStrategy (keras-team/keras#20585, open): it reduces the
    first, nested batch with strategy.reduce, which takes no nests, and it averages each step's scalar logs over an
    axis 0 they do not have. The two smallest changes that let fit run: the model does not remember the strategy
    (fit then builds inside the strategy's scope instead of from that batch, and finds the strategy from the
    scope), and the steps' logs get that axis. tests/test_distributed.py trains two workers with them. The private
    attribute is listed in keras_internals.py."""
    import keras

    model._distribute_strategy = None
    for name in ("train_step", "test_step"):
        step = getattr(model, name)
        setattr(model, name, lambda data, step=step: {k: keras.ops.expand_dims(v, 0) for k, v in step(data).items()})
