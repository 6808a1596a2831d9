"""The private parts of Keras this project relies on, each with the reason; Keras is pinned for them.

tests/test_keras_internals.py calls check(), which fails naming the attribute when a Keras upgrade removes one, so
an upgrade breaks one clear test instead of a training run.
"""

from __future__ import annotations

PRIVATE_USES = (
    ("keras.Model", "_distribute_strategy",
     "device.work_around_multiworker_fit clears it so that fit runs under MultiWorkerMirroredStrategy "
     "(keras-team/keras#20585)."),
    ("keras.callbacks.BackupAndRestore", "_load_model",
     "callbacks.make_backup wraps it so that a torn weights file falls back to the previous checkpoint."),
    ("keras.optimizers.Optimizer", "_trainable_variables",
     "schedules.BiasScaledSGD reads it when apply() is called without variables, to find the BatchNormalization "
     "betas."),
    ("keras.optimizers.Optimizer", "_use_weight_decay",
     "schedules.MuonSGD overrides it to keep the convolution kernels, whose norm it resets, out of the decay."),
    ("keras.optimizers.Optimizer", "_get_variable_index",
     "schedules.MuonSGD finds a kernel's momentum buffer with it."),
)


def _resolve(path: str):
    import keras

    target = keras
    for part in path.split(".")[1:]:
        target = getattr(target, part)
    return target


def missing() -> list[str]:
    """The private uses this Keras no longer has, as sentences."""
    import keras

    gone = []
    for owner, name, why in PRIVATE_USES:
        cls = _resolve(owner)
        if name == "_distribute_strategy":
            present = name in _instance_attributes(keras)
        elif name == "_trainable_variables":
            present = hasattr(keras.optimizers.SGD(), name)
        else:
            present = hasattr(cls, name)
        if not present:
            gone.append(f"{owner}.{name} is gone in Keras {keras.__version__}; {why}")
    return gone


def _instance_attributes(keras) -> set:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    return set(vars(model))
