"""Model specs: frozen dataclasses named and shaped like the Keras layers they become, their limits, the checks of
each field on its own, and the edits of a stack (insert, move, remove a layer) that the Build page's buttons make.

Each layer class carries exactly the keyword arguments of its `keras.layers` namesake, so the builder is
`getattr(keras.layers, type)(**fields)` and the spec JSON reads like Keras. This is the vocabulary every other module
shares, so it imports no other cifar_core module: whether the layers fit together is shapes.py's question, and
reading and writing specs is spec_io.py's, both above this one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

ACTIVATIONS = ("relu", "gelu", "elu", "sigmoid", "tanh", "linear")
PADDINGS = ("same", "valid")
INITIALIZERS = ("glorot_uniform", "he_normal", "dirac")  # dirac: airbench's identity start, see layers.Dirac
MAX_PARAMS = 50_000_000
MAX_CLASSES = 1000
MAX_CLASS_NAME_CHARS = 255  # a class is named by its folder, and a folder name has at most 255 bytes
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


def layer_name(index: int, layer) -> str:
    return f"layer {index} ({type(layer).__name__})"


def _got(value) -> str:
    return "not empty" if value is None else f"got {value!r}"


def check_layer_fields(index: int, layer) -> None:
    """SpecError unless every field of one layer is in its range. Public because two callers need it alone:
    shapes checks each layer before working out its shape, spec_io each layer as it is read (so that a bad value in
    a file is named by its position even when a later layer is unreadable)."""
    where = layer_name(index, layer)
    for f in dataclasses.fields(layer):
        value = getattr(layer, f.name)
        # strides=None ("same as pool_size") exists for pooling layers only; a Conv2D needs a number.
        if f.name in INT_RANGES and not (f.name == "strides" and value is None and isinstance(layer, MaxPooling2D)):
            low, high = INT_RANGES[f.name]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise SpecError(f"{where}: {f.name} must be a whole number from {low} to {high}, {_got(value)}.")
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
                raise SpecError(f"{where}: {f.name} must be a number in {FLOAT_RANGES[f.name][2]}, {_got(value)}.")


def validate_header(spec: ModelSpec) -> None:
    if not isinstance(spec.name, str) or not 1 <= len(spec.name) <= 64 or not spec.name.strip():
        raise SpecError("name must be a text of 1 to 64 characters, not only spaces.")
    shape = spec.input_shape
    if not (isinstance(shape, (tuple, list)) and len(shape) == 3
            and all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
            and 8 <= shape[0] <= 256 and 8 <= shape[1] <= 256 and shape[2] in (1, 3)):
        raise SpecError(f"input_shape must be (height, width, 1 or 3) with sides 8 to 256, got {spec.input_shape}.")
    classes = spec.num_classes
    if isinstance(classes, bool) or not isinstance(classes, int) or not 2 <= classes <= MAX_CLASSES:
        raise SpecError(f"num_classes must be a whole number from 2 to {MAX_CLASSES}, got {classes!r}.")
    scale = spec.logit_scale
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 10:
        raise SpecError(f"logit_scale must be a number in (0, 10], got {scale!r}.")


def replace(spec: ModelSpec, **changes) -> ModelSpec:
    return dataclasses.replace(spec, **changes)


# ---- the Build page's structural edits: each returns a new spec, indices 0-based as in spec.layers

def insert_layer(spec: ModelSpec, index: int, layer) -> ModelSpec:
    """`layer` placed before spec.layers[index] (len(spec.layers): at the end)."""
    layers = list(spec.layers)
    layers.insert(index, layer)
    return replace(spec, layers=tuple(layers))


def move_layer(spec: ModelSpec, index: int, step: int) -> ModelSpec:
    """Layer `index` swapped with the one `step` places away (-1: the one above it, 1: the one below); IndexError
    past either end (a negative index would wrap round to the other end)."""
    layers = list(spec.layers)
    if not (0 <= index < len(layers) and 0 <= index + step < len(layers)):
        raise IndexError(f"layer {index} cannot move {step:+d} in a stack of {len(layers)}.")
    layers[index], layers[index + step] = layers[index + step], layers[index]
    return replace(spec, layers=tuple(layers))


def remove_layer(spec: ModelSpec, index: int) -> ModelSpec:
    """The spec without layer `index`."""
    layers = list(spec.layers)
    del layers[index]
    return replace(spec, layers=tuple(layers))


__all__ = ["ModelSpec", "SpecError", "LAYER_TYPES", "ACTIVATIONS", "PADDINGS", "INITIALIZERS", "MAX_PARAMS",
           "MAX_LAYERS"] + list(LAYER_TYPES)
