"""ModelSpec -> keras.Model, and ModelSpec -> the Keras source that builds the same model.

Layer fields are Keras keyword arguments (see spec.py), so both directions are a loop over the spec.
"""

from __future__ import annotations

import dataclasses
import re

from . import shapes
from . import spec as specs


def _kwargs(layer) -> dict:
    kwargs = dataclasses.asdict(layer)
    if kwargs.get("strides", 0) is None:
        del kwargs["strides"]
    return kwargs


def _keras_layer(layer):
    import keras

    from . import layers as custom

    kwargs = _kwargs(layer)
    if isinstance(layer, specs.PatchWhitening):
        return custom.PatchWhitening(**kwargs)
    if isinstance(layer, specs.BatchNormalization):
        return custom.BatchNormalization(**kwargs)
    if isinstance(layer, specs.Activation):
        return custom.Activation(**kwargs)
    if kwargs.get("kernel_initializer") == "dirac":
        kwargs["kernel_initializer"] = custom.Dirac()
    if isinstance(layer, specs.Conv2D):
        return custom.Conv2D(**kwargs)
    return getattr(keras.layers, type(layer).__name__)(**kwargs)


def build_model(spec: specs.ModelSpec, x_train=None, any_size: bool = False):
    """The Keras model of a valid spec: Input -> Rescaling(1/255) -> layers -> Dense(num_classes) -> softmax,
    with the logits multiplied by spec.logit_scale when it is not 1. A PatchWhitening layer is adapted to the
    first 5,000 images of x_train (uint8), as airbench does; without x_train it stays zero until weights are loaded.
    any_size: the Input takes images of any height and width, for progressive resizing; the model that is saved is
    one built without it (same weights), since the Layers page reads each layer's output size.

    The output layers stay float32 under mixed precision so that softmax and the loss are computed accurately.
    """
    import keras

    shapes.validate(spec)
    shape = (None, None, spec.input_shape[-1]) if any_size else tuple(spec.input_shape)
    layers = [keras.Input(shape=shape), keras.layers.Rescaling(1.0 / 255)]
    layers += [_keras_layer(layer) for layer in spec.layers]
    if spec.logit_scale == 1:
        layers.append(keras.layers.Dense(spec.num_classes, activation="softmax", dtype="float32", name="predictions"))
    else:
        layers += [keras.layers.Dense(spec.num_classes, dtype="float32", name="logits"),
                   keras.layers.Rescaling(spec.logit_scale, dtype="float32", name="logit_scale"),
                   keras.layers.Activation("softmax", dtype="float32", name="predictions")]
    model = keras.Sequential(layers, name=_keras_name(spec.name))
    if x_train is not None and spec.layers and isinstance(spec.layers[0], specs.PatchWhitening):
        model.layers[1].adapt(x_train[:5000].astype("float32") / 255.0)
    return model


def _keras_name(name: str) -> str:
    """The spec's name as TensorFlow takes a model's (its root name scope): ASCII letters, digits, '_', '.' and '-',
    starting with a letter or a digit. 'café net' and '_mine' passed the Build page, then failed every training with
    TensorFlow's own error (the seventh attack)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip("_.-")
    return cleaned or "model"


def _format_args(layer) -> str:
    kwargs = _kwargs(layer)
    defaults = {f.name: f.default for f in dataclasses.fields(layer)}
    # Keras's required arguments (Conv2D's filters and kernel_size, Dense's units, Dropout's rate, AveragePooling2D's
    # pool_size) are positional in Keras examples; keep that style, and always write them, even when they equal the
    # spec's default.
    positional = {"Conv2D": ("filters", "kernel_size"), "Dense": ("units",), "Dropout": ("rate",),
                  "MaxPooling2D": ("pool_size",), "AveragePooling2D": ("pool_size",),
                  "PatchWhitening": ("kernel_size",), "Activation": ("activation",)}.get(type(layer).__name__, ())
    parts = [repr(kwargs[key]) for key in positional]
    for key, value in kwargs.items():
        if key not in positional and (key in ("padding", "activation") or value != defaults[key]):
            parts.append(f"{key}={value!r}")
    return ", ".join(parts)


def to_keras_source(spec: specs.ModelSpec) -> str:
    """A readable, runnable `keras.Sequential([...])` block that builds the same model as build_model(spec)."""
    shapes.validate(spec)
    custom = [name for name, used in (
        ("PatchWhitening", any(isinstance(layer, specs.PatchWhitening) for layer in spec.layers)),
        ("Dirac", any(getattr(layer, "kernel_initializer", "") == "dirac" for layer in spec.layers))) if used]
    lines = ["import keras", "from keras import layers"]
    if custom:
        lines.append(f"from cifar_core.layers import {', '.join(custom)}")
    lines += ["", "model = keras.Sequential(["]
    lines.append(f"    keras.Input(shape={tuple(spec.input_shape)}),")
    lines.append("    layers.Rescaling(1.0 / 255),")
    for layer in spec.layers:
        prefix = "" if isinstance(layer, specs.PatchWhitening) else "layers."
        args = _format_args(layer).replace("kernel_initializer='dirac'", "kernel_initializer=Dirac()")
        lines.append(f"    {prefix}{type(layer).__name__}({args}),")
    if spec.logit_scale == 1:
        lines.append(f"    layers.Dense({spec.num_classes}, activation='softmax'),")
    else:
        lines.append(f"    layers.Dense({spec.num_classes}),")
        lines.append(f"    layers.Rescaling({spec.logit_scale!r}),")
        lines.append("    layers.Activation('softmax'),")
    lines.append(f"], name={_keras_name(spec.name)!r})")
    if "PatchWhitening" in custom:
        lines.append("# Before training, set the whitening from the images: "
                     "model.layers[1].adapt(x_train[:5000] / 255)")
    lines.append("model.summary()")
    return "\n".join(lines) + "\n"
