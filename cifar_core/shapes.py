"""Shapes, parameter counts and multiply-accumulates (MACs) of a spec, inferred layer by layer in pure Python, the
validation that rests on them, and the Build page's table of them.

The Build page shows them on every keystroke, so this imports no TensorFlow; tests check them against Keras for every
preset. A spec is valid exactly when its inference succeeds, which is why validate lives here and not in spec.py:
spec.py holds the vocabulary this walks over and imports nothing back, so the arrow is shapes -> spec only.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

from .spec import (
    LAYER_TYPES,
    MAX_LAYERS,
    MAX_PARAMS,
    Activation,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    LayerNormalization,
    MaxPooling2D,
    ModelSpec,
    PatchWhitening,
    SpecError,
    check_layer_fields,
    layer_name,
    validate_header,
)


@dataclass(frozen=True)
class LayerInfo:
    """One row of the Build page's table: what `model.summary()` would say about a layer, plus MACs."""
    index: int  # 1-based position in the spec; the implied output layer is len(layers) + 1
    type: str
    output_shape: tuple
    params: int
    non_trainable_params: int
    macs: int  # multiply-accumulates per image, forward pass (convolutions and dense layers only)


def _spatial_out(size: int, window: int, stride: int, padding: str) -> int:
    if padding == "same":
        return math.ceil(size / stride)
    return (size - window) // stride + 1 if size >= window else 0


def _infer_one(index: int, layer, shape: tuple) -> tuple[tuple, int, int, int]:
    """Returns (output_shape, params, non_trainable_params, macs) or raises SpecError."""
    where = layer_name(index, layer)
    kind = type(layer).__name__
    channels = shape[-1]
    if isinstance(layer, (Conv2D, MaxPooling2D, GlobalMaxPooling2D, GlobalAveragePooling2D)) and len(shape) != 3:
        raise SpecError(f"{where} needs a 3-D (height, width, channels) input, but its input is {shape}; "
                        "put it before Flatten and Dense layers.")
    if isinstance(layer, PatchWhitening):
        if index != 1:
            raise SpecError(f"{where} must be the first layer: it is set from the images themselves.")
        k = layer.kernel_size
        if k > min(shape[:2]):
            raise SpecError(f"{where}: kernel_size {k} does not fit the {shape[0]} × {shape[1]} input.")
        filters = 2 * channels * k * k
        h, w = shape[0] - k + 1, shape[1] - k + 1
        params = k * k * channels * filters + filters
        return (h, w, filters), params, params, h * w * k * k * channels * filters
    if isinstance(layer, Conv2D):
        k, s = layer.kernel_size, layer.strides
        h, w = (_spatial_out(d, k, s, layer.padding) for d in shape[:2])
        if h < 1 or w < 1:
            raise SpecError(f"{where}: a {k} × {k} kernel with padding 'valid' does not fit its "
                            f"{shape[0]} × {shape[1]} input; use a smaller kernel_size or padding 'same'.")
        params = k * k * channels * layer.filters + (layer.filters if layer.use_bias else 0)
        return (h, w, layer.filters), params, 0, h * w * k * k * channels * layer.filters
    if isinstance(layer, MaxPooling2D):  # and AveragePooling2D
        p, s = layer.pool_size, layer.strides or layer.pool_size
        h, w = (_spatial_out(d, p, s, layer.padding) for d in shape[:2])
        if h < 1 or w < 1:
            raise SpecError(f"{where}: pool_size {p} with padding 'valid' does not fit its {shape[0]} × {shape[1]} "
                            "input; the image has shrunk too far. Remove a pooling layer or use padding 'same'.")
        return (h, w, channels), 0, 0, 0
    if isinstance(layer, (GlobalMaxPooling2D, GlobalAveragePooling2D)):
        return (channels,), 0, 0, 0
    if isinstance(layer, BatchNormalization):
        return shape, (4 if layer.scale else 3) * channels, 2 * channels, 0
    if isinstance(layer, LayerNormalization):
        return shape, 2 * channels, 0, 0
    if isinstance(layer, (Activation, Dropout)):
        return shape, 0, 0, 0
    if isinstance(layer, Flatten):
        return (math.prod(shape),), 0, 0, 0
    if isinstance(layer, Dense):  # like Keras, a Dense on a 3-D input acts on the last axis
        positions = math.prod(shape[:-1])
        params = channels * layer.units + (layer.units if layer.use_bias else 0)
        return shape[:-1] + (layer.units,), params, 0, positions * channels * layer.units
    raise SpecError(f"{where}: unknown layer type {kind!r}.")


def _layer_rows(spec: ModelSpec):
    """Each layer's LayerInfo in turn; SpecError at the first impossible layer (its fields, or the shape it gets)."""
    shape = tuple(spec.input_shape)
    for index, layer in enumerate(spec.layers, start=1):
        if type(layer) not in LAYER_TYPES.values():
            raise SpecError(f"layer {index}: unknown layer type {type(layer).__name__!r}; allowed: "
                            f"{', '.join(LAYER_TYPES)}.")
        check_layer_fields(index, layer)
        shape, params, frozen, macs = _infer_one(index, layer, shape)
        yield LayerInfo(index, type(layer).__name__, shape, params, frozen, macs)


def infer(spec: ModelSpec) -> list[LayerInfo]:
    """Per-layer output shape, parameters and MACs, ending with the implied output layer. Raises SpecError
    naming the first impossible layer."""
    validate_header(spec)
    if not isinstance(spec.layers, (tuple, list)) or len(spec.layers) > MAX_LAYERS:
        count = len(spec.layers) if isinstance(spec.layers, (tuple, list)) else "no list of"
        raise SpecError(f"the spec has {count} layers; the limit is {MAX_LAYERS}.")
    rows = list(_layer_rows(spec))
    shape = rows[-1].output_shape if rows else tuple(spec.input_shape)
    if len(shape) != 1:
        where = (f"{layer_name(len(spec.layers), spec.layers[-1])} is the last layer and outputs" if spec.layers
                 else "the spec has no layers, and its input is")
        raise SpecError(f"{where} {shape}, but the output layer needs a 1-D input; "
                        "end the stack with Flatten, GlobalAveragePooling2D or GlobalMaxPooling2D.")
    out = Dense(units=spec.num_classes)
    _, params, _, macs = _infer_one(len(spec.layers) + 1, out, shape)
    rows.append(LayerInfo(len(spec.layers) + 1, "Dense (output)", (spec.num_classes,), params, 0, macs))
    total = sum(r.params for r in rows)
    if total > MAX_PARAMS:
        largest = max(rows, key=lambda r: r.params)
        raise SpecError(f"the model has {total:,} parameters; the limit is {MAX_PARAMS:,}, and layer {largest.index} "
                        f"({largest.type}) alone has {largest.params:,}. Use fewer filters or units, or pool before "
                        "Flatten.")
    return rows


def validate(spec: ModelSpec) -> ModelSpec:
    infer(spec)
    return spec


def memory_bytes() -> int:
    """This machine's memory, or 16 GB where the system does not say (Windows)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 16 * 2**30


def check_batch(spec: ModelSpec, batch_size: int, memory: int | None = None) -> None:
    """Raises SpecError, naming batch_size, when a training batch's activations would not fit in three quarters of
    the memory (memory_bytes()): the input and every layer's output, kept for the backward pass and matched by
    their gradients, in float32 (2 x 4 bytes a value). The parameter limit alone let a spec of 50 k parameters ask
    for terabytes: one wide convolution at full resolution, then a hundred layers of its size. fast's batch of 1000
    counts 2.7 GB here."""
    values = math.prod(spec.input_shape) + sum(math.prod(row.output_shape) for row in infer(spec))
    need, allowed = batch_size * values * 8, 0.75 * (memory or memory_bytes())
    if need > allowed:
        raise SpecError(f"The training setting batch_size {batch_size:,} asks for about {need / 2**30:,.1f} GB of "
                        f"activations with this model ({values:,} values an image), more than the "
                        f"{allowed / 2**30:,.1f} GB this machine can give; choose a batch_size of at most "
                        f"{max(1, int(allowed // (values * 8))):,}, or a smaller model.")


def at_size(spec: ModelSpec, size: int) -> ModelSpec:
    """The spec fed size x size images, for progressive resizing (TrainConfig.low_res_fraction), which trains the
    same weights on smaller images first. Raises SpecError naming the setting when the images are not smaller, a
    layer does not fit them, or it has a Flatten, whose Dense layers' weights would depend on the image size (every
    other layer's weights follow the channels only)."""
    height, width, channels = spec.input_shape
    if not size < min(height, width):
        raise SpecError(f"The training setting low_res_size must be below the images' {min(height, width)} pixels, "
                        f"got {size}.")
    if any(isinstance(layer, Flatten) for layer in spec.layers):
        raise SpecError("The training setting low_res_fraction needs a network whose weights do not depend on the "
                        "image size, and a Flatten makes its Dense layers depend on it; end the convolutions with "
                        "GlobalMaxPooling2D or GlobalAveragePooling2D instead, or set low_res_fraction to 0.")
    small = replace(spec, input_shape=(size, size, channels))
    try:
        infer(small)
    except SpecError as e:
        raise SpecError(f"The training setting low_res_size {size} does not fit this network: {e} Or choose a "
                        "larger low_res_size, or set low_res_fraction to 0.") from None
    return small


def summary(spec: ModelSpec) -> dict:
    return _totals(infer(spec))


def _totals(rows: list[LayerInfo]) -> dict:
    return {"params": sum(r.params for r in rows),
            "non_trainable_params": sum(r.non_trainable_params for r in rows),
            "macs": sum(r.macs for r in rows)}


def stack_view(spec: ModelSpec) -> tuple[list[LayerInfo], dict | None]:
    """The Build page's figures: (rows, totals) of the layer stack, the rows up to the first impossible layer and
    totals None while the stack is invalid. The model's name and logit scale change neither, so a model whose only
    problem is one of them still shows its whole diagram and its counts."""
    stack = replace(spec, name="stack", logit_scale=1.0)
    try:
        rows = infer(stack)
    except SpecError:
        return infer_prefix(stack), None
    return rows, _totals(rows)


def first_error(spec: ModelSpec) -> tuple[int | None, str] | None:
    """(1-based layer index or None for the whole spec, message) of the first problem, or None if valid."""
    try:
        infer(spec)
    except SpecError as e:
        text = str(e)
        index = int(text.split()[1]) if text.startswith("layer ") and text.split()[1].isdigit() else None
        return index, text
    return None


def layer_errors(spec: ModelSpec) -> dict[int, str]:
    """{1-based layer index: message} of every layer with a field out of its range. Each layer's fields are checked
    on their own, so the Build page names every wrong one at once (it had named the first, and the next showed only
    once that was mended); a shape that fails follows from the layers before it and stays first_error's."""
    found = {}
    for index, layer in enumerate(spec.layers, 1):
        try:
            check_layer_fields(index, layer)
        except SpecError as e:
            found[index] = str(e)
    return found


def infer_prefix(spec: ModelSpec) -> list[LayerInfo]:
    """The Build page's rows while a model is invalid: every layer up to and including the first impossible one,
    whose output_shape is None (so that the user sees where the image shrank to nothing)."""
    rows = []
    try:
        validate_header(spec)
    except SpecError:
        return rows
    try:
        rows.extend(_layer_rows(spec))
    except SpecError:
        if len(rows) < len(spec.layers):
            rows.append(LayerInfo(len(rows) + 1, type(spec.layers[len(rows)]).__name__, None, 0, 0, 0))
    return rows


def table(rows: list[LayerInfo], totals: dict | None = None) -> list[dict]:
    """The Build page's shape table: a row a LayerInfo (layer, output shape, params, MACs; an output_shape of None
    reads '✗ invalid'), then a Total row when `totals` (summary's) are given."""
    shown = [{"layer": f"{r.index}. {r.type}", "output shape": " × ".join(map(str, r.output_shape))
              if r.output_shape else "✗ invalid", "params": r.params, "MACs": r.macs} for r in rows]
    if totals:
        shown.append({"layer": "Total", "output shape": "", "params": totals["params"], "MACs": totals["macs"]})
    return shown


__all__ = ["LayerInfo", "infer", "validate", "summary", "first_error"]
