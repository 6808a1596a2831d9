"""ModelSpec -> keras.Model, and ModelSpec -> the Keras source that builds the same model.

Layer fields are Keras keyword arguments (see spec.py), so both directions are a loop over the spec.
"""

from __future__ import annotations

import dataclasses

from . import spec as specs


def _kwargs(layer) -> dict:
    kwargs = dataclasses.asdict(layer)
    if kwargs.get("strides", 0) is None:
        del kwargs["strides"]
    return kwargs


def build_model(spec: specs.ModelSpec):
    """The Keras model of a valid spec: Input -> Rescaling(1/255) -> layers -> Dense(num_classes, softmax).

    The output layer stays float32 under mixed precision so that softmax and the loss are computed accurately.
    """
    import keras

    specs.validate(spec)
    layers = [keras.Input(shape=tuple(spec.input_shape)), keras.layers.Rescaling(1.0 / 255)]
    layers += [getattr(keras.layers, type(layer).__name__)(**_kwargs(layer)) for layer in spec.layers]
    layers.append(keras.layers.Dense(spec.num_classes, activation="softmax", dtype="float32", name="predictions"))
    return keras.Sequential(layers, name=_keras_name(spec.name))


def _keras_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)
    return cleaned or "model"


def _format_args(layer) -> str:
    kwargs = _kwargs(layer)
    defaults = {f.name: f.default for f in dataclasses.fields(layer)}
    # Keras's required arguments (Conv2D's filters and kernel_size, Dense's units, Dropout's rate, AveragePooling2D's
    # pool_size) are positional in Keras examples; keep that style, and always write them, even when they equal the
    # spec's default.
    positional = {"Conv2D": ("filters", "kernel_size"), "Dense": ("units",), "Dropout": ("rate",),
                  "MaxPooling2D": ("pool_size",), "AveragePooling2D": ("pool_size",)}.get(type(layer).__name__, ())
    parts = [repr(kwargs[key]) for key in positional]
    for key, value in kwargs.items():
        if key not in positional and (key in ("padding", "activation") or value != defaults[key]):
            parts.append(f"{key}={value!r}")
    return ", ".join(parts)


def to_keras_source(spec: specs.ModelSpec) -> str:
    """A readable, runnable `keras.Sequential([...])` block that builds the same model as build_model(spec)."""
    specs.validate(spec)
    lines = ["import keras", "from keras import layers", "", "model = keras.Sequential(["]
    lines.append(f"    keras.Input(shape={tuple(spec.input_shape)}),")
    lines.append("    layers.Rescaling(1.0 / 255),")
    for layer in spec.layers:
        lines.append(f"    layers.{type(layer).__name__}({_format_args(layer)}),")
    lines.append(f"    layers.Dense({spec.num_classes}, activation='softmax'),")
    lines.append(f"], name={_keras_name(spec.name)!r})")
    lines.append("model.summary()")
    return "\n".join(lines) + "\n"
