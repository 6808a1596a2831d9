"""Models: resolving 'default', a run id or a file to a model file, loading it safely, and the serving copy that
predictions run on.

A model is always rebuilt from its .keras file by Keras with safe_mode=True (no Lambda, no code): the archive's
members are size-checked first, so a small zip that expands to gigabytes is refused before Keras opens it, and the
weights its architecture asks for are counted as Keras creates them (_weight_budget), so a small file naming a layer
of a billion weights is refused before they are allocated.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import math
import os
import weakref
import zipfile
from pathlib import Path

import numpy as np

from . import files, runs
from .config import tta_mode
from .data import CIFAR10_CLASSES
from .device import device_info
from .spec import MAX_CLASS_NAME_CHARS, MAX_CLASSES, MAX_PARAMS

MAX_MODEL_CONFIG_BYTES = 16 * 2**20   # config.json inside a .keras file: report-2-2's is 10 kB
MAX_MODEL_MEMBERS = 64  # a .keras file holds 3 (config.json, metadata.json, model.weights.h5)
MAX_MODEL_UNPACKED_BYTES = 2 * 2**30  # all members: the largest model allowed (50 M parameters) is 200 MB

DEFAULT_RUN = Path(__file__).parent / "assets" / "default"


def resolve_model(ref: str, runs_dir: str | os.PathLike | None = None, *, allow_paths: bool = True
                  ) -> tuple[Path, Path | None]:
    """(model.keras path, run directory or None) for 'default', a run identifier under the runs folder, or (from
    the command line only) a local run directory or .keras file. Remote locations are refused: Keras would fetch
    hf:// or gs:// addresses."""
    ref = str(ref)
    if ref == "default":
        return DEFAULT_RUN / "model.keras", DEFAULT_RUN
    if "://" in ref or "\0" in ref:
        raise runs.RunError(f"{ref!r} is not a local model; give a run identifier, a run directory or a .keras file.")
    # A run's model.keras is its own file, never a link (files.open_regular says why).
    if runs.RUN_ID.match(ref) and files.is_regular(runs.run_path(ref, runs_dir) / "model.keras"):
        return runs.run_path(ref, runs_dir) / "model.keras", runs.run_path(ref, runs_dir)
    if not allow_paths:
        raise runs.RunError(f"{ref!r} is not a run with a trained model.")
    path = Path(ref)
    if path.is_dir() and (path / "model.keras").exists():
        return path / "model.keras", path
    if path.suffix == ".keras" and path.is_file():
        return path, None
    raise runs.RunError(f"No model at {ref!r}; give 'default', a run identifier, a run directory or a .keras file.")


def tta_for(run_dir: Path | None) -> str:
    """The test-time augmentation a run's model is meant to be used with (its TrainConfig.tta): off, mirror or
    mirror-shift."""
    config = (runs.read_config(run_dir)) if run_dir else {}
    train = config.get("train")
    return tta_mode(train.get("tta") if isinstance(train, dict) else None)


def class_names_for(run_dir: Path | None, num_classes: int) -> tuple:
    """The class names a model was trained with (from its run's config, when they are a list of num_classes
    strings of at most 255 characters, a folder name's limit), else CIFAR-10's for a 10-class model whose run names
    no classes (the shipped one, a bare .keras file, a config without the field), else "class 0", "class 1", ...:
    a run naming classes that cannot be used had been labelled with CIFAR-10's names, whatever it was trained on."""
    names = (runs.read_config(run_dir)).get("class_names") if run_dir else None
    if isinstance(names, list) and len(names) == num_classes \
            and all(isinstance(n, str) and 0 < len(n) <= MAX_CLASS_NAME_CHARS for n in names):
        return tuple(names)
    if names is None and num_classes == 10:
        return CIFAR10_CLASSES
    return tuple(f"class {i}" for i in range(num_classes))


@functools.lru_cache(maxsize=4)
def _load_model_cached(path: str, mtime_ns: int):
    import keras

    from . import layers  # noqa: F401  (registers PatchWhitening and Dirac, which saved models may name)

    # safe_mode=True (Keras's default, stated here on purpose): a .keras file with a Lambda layer or arbitrary
    # code is refused instead of executed.
    with _weight_budget(MAX_PARAMS):
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    check_loaded(model)
    return _float32_on_cpu(model)


# What one image's activations may take, all layers' outputs in float32 (Grad-CAM and the Layers page keep them
# all): a 16 kB file of 40 weights, an UpSampling2D by 400 before a pooling, took 1 GB an image. The presets take
# under 10 MB.
MAX_IMAGE_ACTIVATION_BYTES = 2**30


def check_loaded(model) -> None:
    """ValueError unless a loaded model is one the pages and the CLI can run: one input of the 32x32 RGB images
    every data source gives, one output of 2 to MAX_CLASSES class scores, and activations within
    MAX_IMAGE_ACTIVATION_BYTES an image. A .keras file of another network (an MNIST model, two outputs, a map as
    output) had raised deep in Classify, Layers and Evaluate."""
    inputs, outputs = getattr(model, "inputs", None) or [], getattr(model, "outputs", None) or []
    if len(inputs) != 1 or tuple(inputs[0].shape[1:]) != (32, 32, 3):
        raise ValueError(f"it takes {', '.join(str(tuple(i.shape)) for i in inputs) or 'no fixed input'}, where "
                         "this tool's images are (None, 32, 32, 3).")
    if len(outputs) != 1 or len(outputs[0].shape) != 2 or not 2 <= (outputs[0].shape[-1] or 0) <= MAX_CLASSES:
        raise ValueError(f"it gives {', '.join(str(tuple(o.shape)) for o in outputs) or 'no output'}, where a "
                         f"classifier gives one (None, classes) output of 2 to {MAX_CLASSES} classes.")
    values = sum(output_sizes(model))
    if values * 4 > MAX_IMAGE_ACTIVATION_BYTES:
        raise ValueError(f"its layers' outputs take {values * 4 / 2**30:.1f} GB for one image; the limit is "
                         f"{MAX_IMAGE_ACTIVATION_BYTES // 2**30} GB.")


def output_sizes(model) -> list[int]:
    """The values each layer output holds for one image (check_loaded sums them, predict_proba sizes its calls by
    the widest); an output whose shape Keras does not know counts nothing."""
    sizes = []
    for layer in getattr(model, "layers", []):
        try:
            outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
            sizes += [math.prod(int(side or 1) for side in output.shape[1:]) for output in outputs]
        except (AttributeError, TypeError, ValueError):
            continue
    return sizes


_weights_left = contextvars.ContextVar("weights_left", default=None)


@contextlib.contextmanager
def _weight_budget(limit: int):
    """Within it, in this thread, Keras's Layer.add_weight refuses a weight that would take the weights created
    beyond `limit` values, before allocating it: Keras builds every layer a .keras file's config names, and
    initialises its weights, before it reads a single stored one, so a 100 kB file naming a Conv2D of 20,000
    filters took 7.8 GB. The limit is the builder's own (spec.MAX_PARAMS): no model this tool trains has more."""
    import keras

    add_weight = keras.layers.Layer.add_weight
    if not getattr(add_weight, "counts_weights", False):
        def counted(self, shape=None, *args, **kwargs):
            left = _weights_left.get()
            if left is not None and shape is not None:
                left[0] -= math.prod(int(side) for side in shape)
                if left[0] < 0:
                    raise ValueError(f"its layer {self.name!r} takes the model past {left[1]:,} weights, more than "
                                     "any model this tool builds; it is refused before they are made.")
            return add_weight(self, shape, *args, **kwargs)

        counted.counts_weights = True
        keras.layers.Layer.add_weight = counted
    token = _weights_left.set([limit, limit])
    try:
        yield
    finally:
        _weights_left.reset(token)


def _float32_on_cpu(model):
    """A float32 copy of a model trained in mixed bfloat16, when no GPU is there: the model the Layers page looks
    inside (Grad-CAM's gradients, feature maps), exactly as its weights say. Predictions run serving_model's
    faster copy."""
    import keras
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU") or all(
            getattr(layer.dtype_policy, "compute_dtype", "float32") == "float32" for layer in model.layers):
        return model

    def as_float32(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    copy = keras.models.clone_model(model, clone_function=as_float32)
    copy.set_weights(model.get_weights())
    return copy


def load_model(path: str | os.PathLike):
    """A model from a .keras file, loaded once per file version (path and modification time)."""
    path = Path(path)
    if path.suffix != ".keras" or not path.is_file():
        raise FileNotFoundError(f"No model file at {path}; a model is a .keras file written by training.")
    check_model_archive(path)
    device_info()  # TensorFlow imported under device's lock first: a page's thread and another's could race
    try:
        return _load_model_cached(str(path.resolve()), path.stat().st_mtime_ns)
    except Exception as e:  # Keras raises many types for a bad file; the user needs one sentence
        raise ValueError(f"The model file {path.name} cannot be loaded safely: {e}") from None


# The output head stays float32 in every copy, as builder.build_model makes it.
HEAD_LAYERS = ("logits", "logit_scale", "predictions")
_serving_copies = weakref.WeakKeyDictionary()


def serving_model(model):
    """The copy of a model that predict_proba runs: every BatchNormalization that follows a linear Conv2D or Dense
    (directly, or through max-pooling when its per-channel scale is positive, since max-pooling commutes with such
    a map) is folded into that layer's kernel and bias, and on a CPU with bfloat16 it computes in bfloat16. It
    predicts what the model predicts, to bfloat16's rounding; load_model's model stays the faithful one that the
    Layers page looks inside. Made once per model; a model that is not a keras.Sequential chain is run as it is."""
    import keras

    if not isinstance(model, keras.Sequential):
        return model
    if model not in _serving_copies:
        _serving_copies[model] = _fold_batch_norm(model, _serving_policy())
    return _serving_copies[model]


def _serving_policy() -> str:
    """bfloat16 on a CPU that has it: with BatchNormalization folded away, its casts are gone and bfloat16
    convolutions pay (the presets' figures, float32 against bfloat16, are in benchmarks/README.md)."""
    from .device import device_info  # the precision training uses here: float32 for a GPU's serving copy

    return "mixed_bfloat16" if device_info()["precision"] == "mixed_bfloat16" else "float32"


def _fold_batch_norm(model, policy: str):
    import keras

    kept = []  # [layer class, config, weights]
    for layer in model.layers:
        config, weights = layer.get_config(), [w.numpy() for w in layer.weights]
        target = _fold_target(kept, layer) if isinstance(layer, keras.layers.BatchNormalization) else None
        if target is None:
            kept.append([type(layer), config, weights])
            continue
        scale, shift = _batch_norm_affine(layer)
        _, target_config, target_weights = kept[target]
        kernel = target_weights[0] * scale
        bias = (target_weights[1] if target_config["use_bias"] else 0.0) * scale + shift
        kept[target][1] = {**target_config, "use_bias": True}
        kept[target][2] = [kernel.astype("float32"), bias.astype("float32")]
    copy = keras.Sequential([keras.Input(shape=model.input_shape[1:])], name=model.name)
    for cls, config, weights in kept:
        dtype = "float32" if config["name"] in HEAD_LAYERS else policy
        copy.add(cls.from_config({**config, "dtype": dtype}))
        copy.layers[-1].set_weights(weights)
    return copy


def _batch_norm_affine(layer):
    """BatchNormalization at inference as x * scale + shift, per channel."""
    scale = 1.0 / np.sqrt(layer.moving_variance.numpy() + layer.epsilon)
    if layer.scale:
        scale = scale * layer.gamma.numpy()
    shift = -layer.moving_mean.numpy() * scale
    if layer.center:
        shift = shift + layer.beta.numpy()
    return scale, shift


def _fold_target(kept, norm):
    """Index in kept of the linear Conv2D or Dense that norm can be folded into, or None."""
    if norm.axis not in (-1, len(norm.input.shape) - 1):
        return None
    through_pooling = False
    for index in range(len(kept) - 1, -1, -1):
        cls, config, _ = kept[index]
        if cls.__name__ in ("Conv2D", "Dense"):
            if config.get("activation") != "linear":
                return None
            if through_pooling and not (_batch_norm_affine(norm)[0] > 0).all():
                return None
            return index
        if cls.__name__ != "MaxPooling2D":
            return None
        through_pooling = True
    return None


def check_model_archive(path: Path) -> None:
    """Refuses a .keras file that is not a zip archive, whose members would unpack to more than the limits, or whose
    config fixes the batch or keeps state (_fixed_batch_or_state): one opening of the archive for all of it."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ValueError(f"The model file {path.name} is not a Keras model file (not a .keras archive).") from None
    with archive:
        members = archive.infolist()
        sizes = {m.filename: m.file_size for m in members}
        if "config.json" not in sizes:
            raise ValueError(f"The model file {path.name} is not a Keras model file (it has no config.json).")
        # Every entry counts, and a name is listed once: Keras unpacks each entry, and a 0.3 MB file naming one
        # 200 MB member twenty times had it write 3.9 GB (the fourth attack).
        if len(sizes) < len(members) or len(members) > MAX_MODEL_MEMBERS:
            raise ValueError(f"The model file {path.name} lists {len(members):,} entries for {len(sizes):,} names; "
                             f"a Keras model file names each member once, and has at most {MAX_MODEL_MEMBERS}.")
        unpacked = sum(m.file_size for m in members)
        if sizes["config.json"] > MAX_MODEL_CONFIG_BYTES or unpacked > MAX_MODEL_UNPACKED_BYTES:
            raise ValueError(f"The model file {path.name} unpacks to {unpacked / 2**20:,.0f} MB, more than "
                             "any model this tool builds; it is refused.")
        try:
            config = json.loads(archive.read("config.json"))
        except (zipfile.BadZipFile, OSError, ValueError, RecursionError):
            raise ValueError(f"The model file {path.name} is not a Keras model file (its config.json cannot be "
                             "read).") from None
    problem = _fixed_batch_or_state(config)
    if problem:
        raise ValueError(f"The model file {path.name} cannot be loaded safely: {problem}; the models this tool "
                         "uses take batches of any size.")


def _fixed_batch_or_state(config) -> str | None:
    """What in a .keras file's config makes Keras allocate state by the batch as it loads (before any weight
    budget sees it: a stateful SimpleRNN's zeros of (batch, units) took 4 GB from a 0.3 MB file), or fixes the
    batch every prediction must have (a batch of 2 failed inside Classify): a stateful layer, a fixed batch size."""
    pending = [config]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            if item.get("stateful"):  # Keras tests it for truth: 1 or "yes" is stateful too
                return "it has a stateful layer"
            # a model or layer is built from its build_config's input_shape, batch first (a Sequential model without
            # an InputLayer makes one of it); elsewhere an input_shape may be Keras 2's, without the batch
            build = item.get("build_config")
            shapes = {**item, "input_shape": build.get("input_shape") if isinstance(build, dict) else None}
            for key in ("batch_shape", "batch_input_shape", "batch_size", "build_input_shape", "input_shape"):
                value = shapes.get(key)
                first = value[0] if isinstance(value, list) and value else value if key == "batch_size" else None
                if first is not None:
                    return f"it fixes the batch size ({key} {value})"
            pending.extend(item.values())
    return None
