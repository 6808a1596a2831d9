"""TrainConfig: every training setting, defined once with its default, unit, allowed values and help.

The field's metadata is the one source that validate_config, the CLI's flags (`python -m cifar_core train --help`)
and the Train page's widgets are all made from. Pure Python: no TensorFlow, so a page or the CLI can check a config
before anything is imported or created.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from .spec import SpecError

OPTIMIZERS = ("adam", "adamw", "sgd", "muon")
SCHEDULES = ("constant", "cosine", "one-cycle")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("default", "mirrored", "multiworker")
TTA_MODES = ("off", "mirror", "mirror-shift")
MAX_SEED = 2**31 - 1  # Keras seeds NumPy, Python and TensorFlow, and NumPy takes at most 32 bits


def setting(default, help: str, *, unit: str = "", low=None, high=None, above=None, below=None, choices=None,
            step=None, group: str = "basic", label: str = ""):
    """A dataclass field with its rules. low/high are inclusive bounds, above/below exclusive ones; group says where
    the Train page shows it: basic, recipe (the airbench recipe's expander) or hidden (kept from the preset)."""
    return field(default=default, metadata={
        "help": help, "unit": unit, "low": low, "high": high, "above": above, "below": below, "choices": choices,
        "step": step, "group": group, "label": label})


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = setting(10, "passes over the training images", low=1, high=1000)
    minutes: float | None = setting(None, "train for this wall-clock time instead of a number of epochs: the job "
                                    "times its first steps and fits the schedule's length to the budget (empty: "
                                    "train the epochs)", unit="minutes", above=0, high=10080, step=1.0,
                                    label="Time budget (minutes)")
    batch_size: int = setting(128, "images per step (per replica under a distribution strategy)", unit="images",
                              low=1, high=4096)
    optimizer: str = setting("adam", "adam, adamw, sgd (Nesterov), or muon (Nesterov SGD, with Muon's "
                             "orthogonalised step for the convolution kernels)", choices=OPTIMIZERS)
    learning_rate: float = setting(1e-3, "the peak learning rate", above=0, high=10, step=1e-4)
    schedule: str = setting("constant", "constant; cosine (decay to 0); one-cycle (linear up, then linear down)",
                            choices=SCHEDULES)
    warmup_epochs: float = setting(0.0, "linear warm-up, for cosine (from 0) and one-cycle (from the start "
                                   "fraction); at most the number of epochs", unit="epochs", low=0, step=0.5,
                                   label="Warm-up epochs")
    weight_decay: float = setting(0.0, "decoupled weight decay (adamw, sgd), multiplied by the learning rate",
                                  low=0, below=1, step=1e-4)
    label_smoothing: float = setting(0.0, "the share of each label spread over the other classes", low=0, below=1,
                                     step=0.05)
    flip: bool = setting(True, "random horizontal flip of training images", label="Random horizontal flip")
    translate: int = setting(2, "random translation of training images (reflect padding, then crop)",
                             unit="pixels", low=0, high=8)
    data: str = setting("", "the data source: sample, keras, or a folder or archive (empty: the default source)",
                        label="Data source")
    limit: int | None = setting(None, "train on only the first N training images (empty: all)", unit="images",
                                low=1, label="Limit training images")
    precision: str = setting("auto", "auto: mixed_float16 on a GPU, mixed_bfloat16 on a CPU with bfloat16, else "
                             "float32", choices=PRECISIONS)
    momentum: float = setting(0.9, "SGD and Muon: the momentum of the SGD part", low=0, below=1, step=0.05,
                              group="recipe", label="Momentum (SGD)")
    filter_learning_rate: float = setting(0.24, "Muon only: the peak step of the convolution kernels, whose "
                                          "norms are held fixed; it follows the schedule's shape (airbench: 0.24 at "
                                          "batch 2000; fast: 0.17 at 1000)",
                                          above=0, high=10, step=0.01, group="recipe",
                                          label="Filter learning rate (Muon)")
    bias_lr_scale: float = setting(1.0, "SGD and Muon: BatchNormalization's betas learn this many times faster "
                                   "(airbench: 64)", unit="x", above=0, high=1000, step=1.0, group="recipe",
                                   label="BN bias learning-rate ×")
    start_fraction: float = setting(0.0, "one-cycle: the learning rate at step 0, as a fraction of the peak",
                                    low=0, high=1, step=0.05, group="recipe", label="One-cycle start (× peak)")
    end_fraction: float = setting(0.0, "one-cycle: the learning rate at the last step, as a fraction of the peak",
                                  low=0, high=1, step=0.01, group="recipe", label="One-cycle end (× peak)")
    low_res_fraction: float = setting(0.0, "progressive resizing: the first share of the training steps sees its "
                                      "images scaled down to low_res_size, at a fraction of a full step's cost; the "
                                      "rest trains at full size. The network must end in global pooling (no "
                                      "Flatten before a Dense)", low=0, below=1, step=0.05, group="recipe",
                                      label="Low-resolution share")
    low_res_size: int = setting(16, "the side of the images in the low-resolution share (below the images' own)",
                                unit="pixels", low=8, high=256, group="recipe", label="Low-resolution size")
    min_steps: int | None = setting(None, "with a time budget: the fewest training steps the run should take. When "
                                    "the budget's first estimate holds fewer, the batch halves (to a quarter at "
                                    "most) and the learning rates follow it, since a few dozen large steps learn "
                                    "less than more smaller ones (empty: keep the batch)", unit="steps", low=1,
                                    high=1_000_000, group="recipe", label="Fewest steps in a budget")
    lookahead: bool = setting(False, "airbench's lookahead: train on from a moving average of the weights",
                              group="recipe", label="Lookahead (weight averaging)")
    tta: str = setting("off", "test-time augmentation when evaluating and classifying: off; mirror (each image "
                       "and its mirror image, their probabilities averaged); mirror-shift (airbench's: the mirror "
                       "pair, averaged with the pair shifted a pixel up-left and down-right; three times mirror's "
                       "work)", choices=TTA_MODES, group="recipe", label="Test-time augmentation")
    seed: int = setting(0, "the random seed of initialisation, shuffling and augmentation", low=0, high=MAX_SEED,
                        group="hidden")
    strategy: str = setting("default", "default; mirrored (all local GPUs); multiworker (TF_CONFIG)",
                            choices=STRATEGIES, group="hidden")


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def fields_in(group: str) -> list[str]:
    """The names of one group's fields (basic, recipe or hidden: setting's `group`), in TrainConfig's order."""
    return [name for name, f in FIELDS.items() if f.metadata["group"] == group]


def label(name: str) -> str:
    """The field's name as the Train page shows it."""
    return FIELDS[name].metadata["label"] or name.replace("_", " ").capitalize()


def kind(name: str) -> type:
    """bool, int, float or str: the field's type (int for `int | None`)."""
    annotation = str(FIELDS[name].type)
    return next(t for t in (bool, int, float, str) if annotation.startswith(t.__name__))


def optional(name: str) -> bool:
    return "None" in str(FIELDS[name].type)


def bounds(name: str) -> tuple:
    """The field's inclusive (low, high), None where it has none: what a form outside the Train page (the Sweep
    page's epochs per trial) bounds its own box by."""
    meta = FIELDS[name].metadata
    return meta["low"], meta["high"]


def allowed(name: str) -> str:
    """What the field accepts, as the end of a sentence: 'a whole number from 1 to 1000', 'a number in (0, 10]'."""
    meta = FIELDS[name].metadata
    if meta["choices"]:
        return "one of " + ", ".join(meta["choices"])
    t = kind(name)
    if t is bool:
        return "true or false"
    if t is str:
        return "a text"
    noun = "a whole number" if t is int else "a number"
    lo = meta["low"] if meta["low"] is not None else meta["above"]
    hi = meta["high"] if meta["high"] is not None else meta["below"]
    if lo is not None and hi is not None:
        if t is int and meta["above"] is None and meta["below"] is None:
            text = f"{noun} from {lo} to {hi:,}" if hi >= 10_000 else f"{noun} from {lo} to {hi}"
        else:
            text = f"{noun} in {'(' if meta['above'] is not None else '['}{lo}, {hi}" \
                   f"{')' if meta['below'] is not None else ']'}"
    elif lo is not None:
        text = f"{noun} {'above' if meta['above'] is not None else 'of at least'} {lo}"
    else:
        text = noun
    return ("empty or " + text) if optional(name) else text


def describe(name: str, default=dataclasses.MISSING) -> str:
    """One line of help: what the field does, its unit, what it accepts and its default (the CLI's --help and the
    widgets'). `default`: the value a page starts from (a preset's), where the field's own would be wrong there."""
    meta = FIELDS[name].metadata
    unit = f"; in {meta['unit']}" if meta["unit"] and meta["unit"] != "x" else ""
    value = FIELDS[name].default if default is dataclasses.MISSING else default
    return f"{meta['help']}{unit}; {allowed(name)}; default {in_words(value)}."


def in_words(value) -> str:
    """A setting's value as pages and help say it, not as Python: None is an empty box, True a ticked one."""
    if value is None or value == "":
        return "empty"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:.12g}" if isinstance(value, float) else str(value)  # 12 digits: 0.0030000001 is not 0.003


def _ok(name: str, value) -> bool:
    meta, t = FIELDS[name].metadata, kind(name)
    if value is None:
        return optional(name)
    if t is bool:
        return isinstance(value, bool)
    if t is str:
        return isinstance(value, str) and (not meta["choices"] or value in meta["choices"]) and len(value) <= 4096
    if isinstance(value, bool) or not isinstance(value, (int, float) if t is float else int):
        return False
    if t is float and value != value:  # NaN
        return False
    return ((meta["low"] is None or value >= meta["low"]) and (meta["high"] is None or value <= meta["high"])
            and (meta["above"] is None or value > meta["above"]) and (meta["below"] is None or value < meta["below"]))


def setting_problem(name: str, value) -> str | None:
    """The sentence saying what is wrong with one setting's value on its own, or None when it is allowed."""
    return None if _ok(name, value) else f"The training setting {name} must be {allowed(name)}, got {value!r}."


def validate_config(config: TrainConfig) -> TrainConfig:
    """The config, or SpecError naming the first bad field and what it accepts."""
    for name in FIELDS:
        problem = setting_problem(name, getattr(config, name))
        if problem:
            raise SpecError(problem)
    if config.warmup_epochs > config.epochs:
        raise SpecError(f"The training setting warmup_epochs must be at most epochs ({config.epochs}), got "
                        f"{config.warmup_epochs!r}.")
    if config.minutes is not None and config.schedule == "cosine":
        raise SpecError("The training setting minutes needs schedule one-cycle or constant: a time budget moves the "
                        "end of the schedule, and Keras's cosine decay has a fixed length.")
    if config.strategy == "multiworker" and not os.environ.get("TF_CONFIG"):
        raise SpecError("The training setting strategy 'multiworker' needs the TF_CONFIG environment variable (the "
                        "cluster's workers and this one's index) on every machine; see the README.")
    return config


def config_from_dict(data) -> TrainConfig:
    """A TrainConfig from JSON data, checked: unknown keys and bad values are refused naming them."""
    if not isinstance(data, dict):
        raise SpecError(f"Training settings must be a JSON object of setting names and values, got "
                        f"{type(data).__name__}.")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise SpecError(f"Unknown training setting(s) {', '.join(map(str, unknown))}; allowed: "
                        f"{', '.join(FIELDS)}.")
    if isinstance(data.get("tta"), bool):
        data = {**data, "tta": tta_mode(data["tta"])}
    values = {name: float(v) if kind(name) is float and isinstance(v, int) and not isinstance(v, bool)
              and abs(v) < 2**1000 else v for name, v in data.items()}  # 10**400 overflows a float: left to check
    return validate_config(TrainConfig(**values))


def tta_mode(value) -> str:
    """A stored tta setting or evaluation's as one of TTA_MODES: runs from before the modes stored true (mirror) or
    false; anything else unknown is off."""
    if value is True:
        return "mirror"
    return value if isinstance(value, str) and value in TTA_MODES else "off"


def with_epochs(config: TrainConfig, epochs: int) -> TrainConfig:
    """The same recipe over another number of epochs: the warm-up keeps its share of the schedule."""
    warmup = round(config.warmup_epochs * epochs / config.epochs, 2) if config.epochs else config.warmup_epochs
    return dataclasses.replace(config, epochs=epochs, warmup_epochs=warmup)


def with_changes(config: TrainConfig, changes: dict) -> TrainConfig:
    """config with changes (setting name -> value) applied and checked, as config_from_dict checks them. A new number
    of epochs without a warm-up of its own keeps the warm-up's share of the schedule (with_epochs): a preset's
    2.76 warm-up epochs would otherwise refuse a 2-epoch run. A batch size or learning rate without a min_steps of
    its own clears min_steps: a batch or rate asked for (a flag, a sweep's trial) is trained as given, not halved."""
    epochs = changes.get("epochs")
    if "warmup_epochs" not in changes and isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 1:
        config = with_epochs(config, epochs)
    if "min_steps" not in changes and {"batch_size", "learning_rate"} & set(changes):
        config = dataclasses.replace(config, min_steps=None)
    return config_from_dict({**to_dict(config), **changes})


def with_batch_size(config: TrainConfig, batch_size: int) -> TrainConfig:
    """The same recipe at another batch size: the rate of SGD and Muon's SGD part (on a mean loss) scales with the
    batch, Adam's and Muon's kernel step with its square root (the step's length does not follow the batch). The
    decoupled weight decay, multiplied by the rate, then decays as much per epoch."""
    ratio = batch_size / config.batch_size
    linear = config.optimizer in ("sgd", "muon")
    return dataclasses.replace(config, batch_size=batch_size,
                               learning_rate=config.learning_rate * (ratio if linear else ratio ** 0.5),
                               filter_learning_rate=config.filter_learning_rate * ratio ** 0.5)


def to_dict(config: TrainConfig) -> dict:
    return dataclasses.asdict(config)
