"""Model specs: frozen dataclasses named and shaped like the Keras layers they become.

Each layer class carries exactly the keyword arguments of its `keras.layers` namesake, so the builder is
`getattr(keras.layers, type)(**fields)` and the spec JSON reads like Keras. Shapes, parameter counts and
multiply-accumulates (MACs) are inferred here in pure Python, so the Build page can show them on every keystroke
without importing TensorFlow; tests check them against Keras for every preset.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from . import files

ACTIVATIONS = ("relu", "gelu", "elu", "sigmoid", "tanh", "linear")
PADDINGS = ("same", "valid")
INITIALIZERS = ("glorot_uniform", "he_normal", "dirac")  # dirac: airbench's identity start, see layers.Dirac
MAX_PARAMS = 50_000_000
MAX_CLASSES = 1000
MAX_SPEC_BYTES = 256 * 2**10  # a spec of MAX_LAYERS layers is about 10 kB
# The Build page redraws every layer's widgets on each edit, and must answer within 2 s; the largest preset has 25.
MAX_LAYERS = 64


class SpecError(ValueError):
    """A spec the builder must not build; the message names the layer or field and what is allowed."""


@dataclass(frozen=True)
class Conv2D:
    filters: int = 32
    kernel_size: int = 3
    strides: int = 1
    padding: str = "same"
    activation: str = "relu"
    use_bias: bool = True
    kernel_initializer: str = "glorot_uniform"


@dataclass(frozen=True)
class PatchWhitening:
    """Not a Keras layer but cifar_core.layers.PatchWhitening: a fixed convolution set from the training images
    that whitens kernel_size x kernel_size patches; 2 * channels * kernel_size**2 outputs. First layer only."""
    kernel_size: int = 2
    epsilon: float = 5e-4  # added to the patch covariance's eigenvalues: bounds the gain on the faintest patterns


@dataclass(frozen=True)
class MaxPooling2D:
    pool_size: int = 2
    strides: int | None = None  # None means pool_size, as in Keras
    padding: str = "valid"


@dataclass(frozen=True)
class AveragePooling2D(MaxPooling2D):
    pass


@dataclass(frozen=True)
class GlobalMaxPooling2D:
    pass


@dataclass(frozen=True)
class GlobalAveragePooling2D:
    pass


@dataclass(frozen=True)
class BatchNormalization:
    momentum: float = 0.99  # of the moving statistics; short CPU trainings need less (e.g. 0.9)
    epsilon: float = 1e-3
    scale: bool = True      # learn a per-channel gamma; airbench keeps it at 1 (False)


@dataclass(frozen=True)
class LayerNormalization:
    pass


@dataclass(frozen=True)
class Activation:
    activation: str = "relu"


@dataclass(frozen=True)
class Dropout:
    rate: float = 0.25


@dataclass(frozen=True)
class Flatten:
    pass


@dataclass(frozen=True)
class Dense:
    units: int = 128
    activation: str = "relu"
    use_bias: bool = True


LAYER_TYPES = {cls.__name__: cls for cls in (
    Conv2D, PatchWhitening, MaxPooling2D, AveragePooling2D, GlobalMaxPooling2D, GlobalAveragePooling2D,
    BatchNormalization, LayerNormalization, Activation, Dropout, Flatten, Dense,
)}

# Allowed ranges, (low, high) inclusive, for each integer field.
INT_RANGES = {"filters": (1, 4096), "kernel_size": (1, 11), "strides": (1, 8), "pool_size": (1, 32),
              "units": (1, 100_000)}


# Allowed ranges of each float field, (low, high, as written), open where the written range is open; the Build page's
# number inputs take their bounds from float_bounds, so they allow exactly what validation does.
BELOW_ONE, ABOVE_ZERO = math.nextafter(1.0, 0.0), math.nextafter(0.0, 1.0)
FLOAT_RANGES = {"momentum": (0.0, BELOW_ONE, "[0, 1)"), "rate": (0.0, BELOW_ONE, "[0, 1)"),
                "epsilon": (ABOVE_ZERO, BELOW_ONE, "(0, 1)")}


def float_bounds(name: str) -> tuple[float, float]:
    """The smallest and largest value a float field takes (its open bounds made the nearest floats inside)."""
    return FLOAT_RANGES[name][:2]


@dataclass(frozen=True)
class ModelSpec:
    """A CNN for 32x32 images: inputs are rescaled from [0, 255] to [0, 1], then `layers`, then the implied
    output layer Dense(num_classes), its logits multiplied by logit_scale, then softmax."""
    name: str = "custom"
    layers: tuple = ()
    input_shape: tuple = (32, 32, 3)
    num_classes: int = 10
    logit_scale: float = 1.0  # airbench uses 1/9: with its learning rates, unscaled logits grow too fast


@dataclass(frozen=True)
class LayerInfo:
    """One row of the Build page's table: what `model.summary()` would say about a layer, plus MACs."""
    index: int  # 1-based position in the spec; the implied output layer is len(layers) + 1
    type: str
    output_shape: tuple
    params: int
    non_trainable_params: int
    macs: int  # multiply-accumulates per image, forward pass (convolutions and dense layers only)


def layer_name(index: int, layer) -> str:
    return f"layer {index} ({type(layer).__name__})"


def _check_layer_fields(index: int, layer) -> None:
    where = layer_name(index, layer)
    for f in dataclasses.fields(layer):
        value = getattr(layer, f.name)
        # strides=None ("same as pool_size") exists for pooling layers only; a Conv2D needs a number.
        if f.name in INT_RANGES and not (f.name == "strides" and value is None and isinstance(layer, MaxPooling2D)):
            low, high = INT_RANGES[f.name]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise SpecError(f"{where}: {f.name} must be an integer from {low} to {high}, got {value!r}.")
        if f.name == "activation" and value not in ACTIVATIONS:
            raise SpecError(f"{where}: activation must be one of {', '.join(ACTIVATIONS)}, got {value!r}.")
        if f.name == "padding" and value not in PADDINGS:
            raise SpecError(f"{where}: padding must be 'same' or 'valid', got {value!r}.")
        if f.name in ("use_bias", "scale") and not isinstance(value, bool):
            raise SpecError(f"{where}: {f.name} must be true or false, got {value!r}.")
        if f.name == "kernel_initializer" and value not in INITIALIZERS:
            raise SpecError(f"{where}: kernel_initializer must be one of {', '.join(INITIALIZERS)}, got {value!r}.")
        if f.name in FLOAT_RANGES:
            low, high = float_bounds(f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise SpecError(f"{where}: {f.name} must be a number in {FLOAT_RANGES[f.name][2]}, got {value!r}.")


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
            raise SpecError(f"{where}: kernel_size {k} does not fit the {shape[0]}x{shape[1]} input.")
        filters = 2 * channels * k * k
        h, w = shape[0] - k + 1, shape[1] - k + 1
        params = k * k * channels * filters + filters
        return (h, w, filters), params, params, h * w * k * k * channels * filters
    if isinstance(layer, Conv2D):
        k, s = layer.kernel_size, layer.strides
        h, w = (_spatial_out(d, k, s, layer.padding) for d in shape[:2])
        if h < 1 or w < 1:
            raise SpecError(f"{where}: a {k}x{k} kernel with padding 'valid' does not fit its {shape[0]}x{shape[1]} "
                            "input; use a smaller kernel_size or padding 'same'.")
        params = k * k * channels * layer.filters + (layer.filters if layer.use_bias else 0)
        return (h, w, layer.filters), params, 0, h * w * k * k * channels * layer.filters
    if isinstance(layer, MaxPooling2D):  # and AveragePooling2D
        p, s = layer.pool_size, layer.strides or layer.pool_size
        h, w = (_spatial_out(d, p, s, layer.padding) for d in shape[:2])
        if h < 1 or w < 1:
            raise SpecError(f"{where}: pool_size {p} with padding 'valid' does not fit its {shape[0]}x{shape[1]} "
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
        _check_layer_fields(index, layer)
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


def validate_header(spec: ModelSpec) -> None:
    if not isinstance(spec.name, str) or not 1 <= len(spec.name) <= 64:
        raise SpecError("name must be a text of 1 to 64 characters.")
    shape = spec.input_shape
    if not (isinstance(shape, (tuple, list)) and len(shape) == 3
            and all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
            and 8 <= shape[0] <= 256 and 8 <= shape[1] <= 256 and shape[2] in (1, 3)):
        raise SpecError(f"input_shape must be (height, width, 1 or 3) with sides 8 to 256, got {spec.input_shape}.")
    classes = spec.num_classes
    if isinstance(classes, bool) or not isinstance(classes, int) or not 2 <= classes <= MAX_CLASSES:
        raise SpecError(f"num_classes must be an integer from 2 to {MAX_CLASSES}, got {classes!r}.")
    scale = spec.logit_scale
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 10:
        raise SpecError(f"logit_scale must be a number in (0, 10], got {scale!r}.")


def validate(spec: ModelSpec) -> ModelSpec:
    infer(spec)
    return spec


def summary(spec: ModelSpec) -> dict:
    rows = infer(spec)
    return {"params": sum(r.params for r in rows),
            "non_trainable_params": sum(r.non_trainable_params for r in rows),
            "macs": sum(r.macs for r in rows)}


def first_error(spec: ModelSpec) -> tuple[int | None, str] | None:
    """(1-based layer index or None for the whole spec, message) of the first problem, or None if valid."""
    try:
        infer(spec)
    except SpecError as e:
        text = str(e)
        index = int(text.split()[1]) if text.startswith("layer ") and text.split()[1].isdigit() else None
        return index, text
    return None


def layer_to_dict(layer) -> dict:
    return {"type": type(layer).__name__, **dataclasses.asdict(layer)}


def layer_from_dict(data: dict, index: int = 0):
    if not isinstance(data, dict):
        raise SpecError(f"layer {index}: expected an object with a 'type', got {type(data).__name__}.")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in LAYER_TYPES:
        raise SpecError(f"layer {index}: unknown layer type {kind!r}; allowed: {', '.join(LAYER_TYPES)}.")
    cls = LAYER_TYPES[kind]
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - allowed - {"type"})
    if unknown:
        raise SpecError(f"layer {index} ({kind}): unknown key(s) {', '.join(unknown)}; allowed: "
                        f"{', '.join(sorted(allowed)) or 'none'}.")
    layer = cls(**{k: v for k, v in data.items() if k != "type"})
    _check_layer_fields(index, layer)
    return layer


def to_dict(spec: ModelSpec) -> dict:
    return {"name": spec.name, "input_shape": list(spec.input_shape), "num_classes": spec.num_classes,
            "logit_scale": spec.logit_scale, "layers": [layer_to_dict(layer) for layer in spec.layers]}


def from_dict(data: dict) -> ModelSpec:
    if not isinstance(data, dict):
        raise SpecError("a model spec must be a JSON object with 'name' and 'layers'.")
    unknown = sorted(set(data) - {"name", "layers", "input_shape", "num_classes", "logit_scale"})
    if unknown:
        raise SpecError(f"unknown key(s) {', '.join(unknown)}; allowed: name, layers, input_shape, num_classes, "
                        "logit_scale.")
    layers = data.get("layers", [])
    if not isinstance(layers, list):
        raise SpecError("layers must be a list.")
    if len(layers) > MAX_LAYERS:
        raise SpecError(f"the spec has {len(layers):,} layers; the limit is {MAX_LAYERS}.")
    spec = ModelSpec(name=data.get("name", "custom"),
                     layers=tuple(layer_from_dict(d, i) for i, d in enumerate(layers, start=1)),
                     input_shape=_shape_tuple(data.get("input_shape", (32, 32, 3))),
                     num_classes=data.get("num_classes", 10), logit_scale=data.get("logit_scale", 1.0))
    return validate(spec)


def _shape_tuple(value):
    return tuple(value) if isinstance(value, list) else value  # anything else is refused by validate_header


def to_json(spec: ModelSpec) -> str:
    return json.dumps(to_dict(spec), indent=2)


def from_json(text: str | bytes) -> ModelSpec:
    """A spec from JSON text, read by files.parse_json: bounded in size and depth, no duplicate keys, no NaN, no
    huge numbers; every problem is a SpecError sentence."""
    try:
        data = files.parse_json(text, max_bytes=MAX_SPEC_BYTES)
    except files.JSONFileError as e:
        raise SpecError(f"the spec cannot be read: {e}") from None
    return from_dict(data)


def replace(spec: ModelSpec, **changes) -> ModelSpec:
    return dataclasses.replace(spec, **changes)


__all__ = ["ModelSpec", "LayerInfo", "SpecError", "LAYER_TYPES", "ACTIVATIONS", "PADDINGS", "INITIALIZERS",
           "MAX_PARAMS", "MAX_LAYERS", "infer",
           "validate", "summary", "first_error", "to_dict", "from_dict", "to_json", "from_json", "layer_to_dict",
           "layer_from_dict"] + list(LAYER_TYPES)


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


def layer_settings(layer) -> str:
    """A layer's settings that differ from its defaults, as 'filters=64, padding=valid' (the Build page's table)."""
    parts = []
    for f in dataclasses.fields(layer):
        value = getattr(layer, f.name)
        if value != f.default:
            shown = {True: "true", False: "false", None: "none"}.get(value, value) if not isinstance(
                value, (int, float)) or isinstance(value, bool) else value
            parts.append(f"{f.name}={shown}")
    return ", ".join(parts)


def layer_from_settings(kind: str, text: str, index: int):
    """The layer of type `kind` with the settings of layer_settings' form (missing ones take their defaults);
    SpecError naming the layer and the setting otherwise."""
    data = {"type": kind}
    for part in filter(None, (p.strip() for p in str(text or "").split(","))):
        name, sep, raw = part.partition("=")
        if not sep or not name.strip():
            raise SpecError(f"Layer {index} ({kind}): write its settings as name=value, separated by commas, "
                            f"got {part!r}.")
        raw = raw.strip()
        value = {"true": True, "false": False, "none": None}.get(raw.lower(), raw)
        if isinstance(value, str):
            for number in (int, float):
                try:
                    value = number(raw)
                    break
                except ValueError:
                    pass
        data[name.strip()] = value
    floats = {f.name for f in dataclasses.fields(LAYER_TYPES.get(kind, Flatten)) if isinstance(f.default, float)}
    data.update({k: float(v) for k, v in data.items()
                 if k in floats and isinstance(v, int) and not isinstance(v, bool)})
    return layer_from_dict(data, index)
