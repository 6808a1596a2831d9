"""The search space of a sweep: a short JSON object over spec and training fields, checked, asked of Optuna, and
applied to a model spec and its settings.

    {"width": {"low": 0.5, "high": 2, "log": true},      every Conv2D's filters scaled
     "dropout": {"low": 0, "high": 0.5},                  every Dropout's rate
     "learning_rate": {"low": 3e-4, "high": 1e-2, "log": true},
     "preset": {"choices": ["tiny", "fast-small"]}}       the starting model and its settings

Each entry is a range {"low", "high", "log"} or a choice {"choices": [...]}, and every value is checked as the
setting it becomes would be, so a trial never fails on a value the space allowed.
"""

from __future__ import annotations

import dataclasses
import math

from . import config as configs
from . import shapes
from . import spec as specs
from .files import parse_json

# The search space: each entry a range {"low", "high", "log"} or a choice {"choices": [...]}.
# width scales every Conv2D's filters; dropout sets every Dropout's rate; preset picks the starting model (its spec
# and training settings, before the other entries apply); the rest are TrainConfig fields.
SPACE_KEYS = {"width": float, "dropout": float, "learning_rate": float, "weight_decay": float,
              "label_smoothing": float, "epochs": int, "batch_size": int, "optimizer": str, "preset": str}
WIDTH_RANGE = (0.125, 8.0)


class SweepError(specs.SpecError):
    """A study or search space that cannot be used; the message is a sentence for the user."""


def default_space(model_spec: specs.ModelSpec) -> dict:
    """A search space that suits most models: filters x0.5..x2, the learning rate over two decades around the
    usual Adam one, label smoothing, and the dropout rate when the model has Dropout layers."""
    space = {"width": {"low": 0.5, "high": 2.0, "log": True},
             "learning_rate": {"low": 3e-4, "high": 1e-2, "log": True},
             "label_smoothing": {"low": 0.0, "high": 0.2}}
    if any(isinstance(layer, specs.Dropout) for layer in model_spec.layers):
        space["dropout"] = {"low": 0.0, "high": 0.6}
    return space


def _check_value(key: str, value) -> None:
    """A bound or a choice of the space, checked as the setting it becomes would be."""
    from .presets import PRESETS

    if key == "width":
        if not WIDTH_RANGE[0] <= value <= WIDTH_RANGE[1]:
            raise SweepError(f"The search space's width must lie from {WIDTH_RANGE[0]} to {WIDTH_RANGE[1]}, got "
                             f"{value}.")
    elif key == "dropout":
        if not 0 <= value < 1:
            raise SweepError(f"The search space's dropout must lie in [0, 1), got {value}.")
    elif key == "preset":
        if value not in PRESETS:
            raise SweepError(f"The search space's preset {value!r} is not one of {', '.join(PRESETS)}.")
    else:  # as a SweepError, the one error a space's readers catch (the Sweep page had shown config's traceback)
        try:
            configs.validate_config(dataclasses.replace(configs.TrainConfig(), **{key: value}))
        except specs.SpecError as e:
            raise SweepError(str(e).replace("The training setting", "The search space's", 1)) from None


def check_space(space, model_spec: specs.ModelSpec | None = None) -> dict:
    """The space, checked: known keys, each a range (numbers, low <= high, log only above 0) or a non-empty list of
    choices, every value allowed for its setting; SweepError with one sentence otherwise."""
    if not isinstance(space, dict) or not space:
        raise SweepError("The search space must be a JSON object with at least one of: " + ", ".join(SPACE_KEYS) + ".")
    clean = {}
    for key, entry in space.items():
        if key not in SPACE_KEYS:
            raise SweepError(f"The search space has an unknown entry {key!r}; use any of {', '.join(SPACE_KEYS)}.")
        kind = SPACE_KEYS[key]
        if not isinstance(entry, dict):
            raise SweepError(f"The search space's {key} must be an object such as {{\"low\": 1, \"high\": 2}} or "
                             "{\"choices\": [...]}.")
        if "choices" in entry:
            choices = entry["choices"]
            if set(entry) != {"choices"} or not isinstance(choices, list) or not 1 <= len(choices) <= 50:
                raise SweepError(f"The search space's {key} choices must be a list of 1 to 50 values, alone.")
            for value in choices:
                if not _is_kind(value, kind):
                    raise SweepError(f"The search space's {key} choices must be {kind.__name__} values, got "
                                     f"{value!r}.")
                _check_value(key, value)
            clean[key] = {"choices": list(choices)}
            continue
        if kind is str:
            raise SweepError(f"The search space's {key} takes {{\"choices\": [...]}}, not a range.")
        low, high, log = entry.get("low"), entry.get("high"), entry.get("log", False)
        if set(entry) - {"low", "high", "log"} or not _is_kind(low, kind) or not _is_kind(high, kind) \
                or not isinstance(log, bool):
            raise SweepError(f"The search space's {key} must have low and high ({kind.__name__} values) and "
                             "optionally log (true or false).")
        if low > high:
            raise SweepError(f"The search space's {key} has low {low} above high {high}.")
        if log and low <= 0:
            raise SweepError(f"The search space's {key} is on a log scale, so low must be above 0, got {low}.")
        _check_value(key, low)
        _check_value(key, high)
        clean[key] = {"low": low, "high": high, "log": log}
    if model_spec is not None and "dropout" in clean and "preset" not in clean and \
            not any(isinstance(layer, specs.Dropout) for layer in model_spec.layers):
        raise SweepError(f"The search space varies dropout, but the model {model_spec.name} has no Dropout layer.")
    # the widths' ends, built: filters and parameters grow with the width, so a space whose ends build trains every
    # width between (width 4.5 of report-2-2 had failed every trial, and the sweep had ended 'finished')
    widths = clean["width"] if "width" in clean and model_spec is not None and "preset" not in clean else {}
    for width in widths.get("choices") or [widths[k] for k in ("low", "high") if k in widths]:
        try:
            apply_params(model_spec, configs.TrainConfig(), {"width": width})
        except specs.SpecError as e:
            raise SweepError(f"At width {width:g} the model {model_spec.name} cannot be built: {e} Narrow the search "
                             "space's width.") from None
    return clean


def _is_kind(value, kind) -> bool:
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, float) and math.isfinite(value) or isinstance(value, int) and abs(value) < 2**1000
    return isinstance(value, kind)


def parse_space(text: str | bytes, model_spec: specs.ModelSpec | None = None) -> dict:
    try:
        space = parse_json(text)
    except ValueError as e:
        raise SweepError(f"The search space is not valid JSON: {e}") from None
    return check_space(space, model_spec)


def suggest(trial, space: dict) -> dict:
    """The trial's parameters, asked of Optuna entry by entry (so its samplers see the real distributions)."""
    params = {}
    for key, entry in space.items():
        if "choices" in entry:
            params[key] = trial.suggest_categorical(key, entry["choices"])
        elif SPACE_KEYS[key] is int:
            params[key] = trial.suggest_int(key, entry["low"], entry["high"], log=entry["log"])
        else:
            params[key] = significant(trial.suggest_float(key, entry["low"], entry["high"], log=entry["log"]),
                                      entry["low"], entry["high"])
    return params


def significant(value: float, low: float, high: float) -> float:
    """A sampled number to three significant digits, within [low, high]: what a person would type, and what the
    Train page's box shows whole (a best trial's learning rate of 0.0023456789123 opened in Train cut off there).
    The trial trains on it, at most 0.5% from Optuna's sample, which TPE's density model does not notice."""
    return min(max(float(f"{value:.3g}"), low), high)


def apply_params(model_spec: specs.ModelSpec, config: configs.TrainConfig, params: dict):
    """The spec and settings of a trial: the base (or the chosen preset), filters scaled, dropout and the training
    fields set. SpecError when the result cannot be trained (too many parameters, say)."""
    from .presets import get_preset

    if "preset" in params:
        preset = get_preset(params["preset"])
        keep = {name: getattr(config, name) for name in ("data", "limit", "epochs", "minutes")}
        model_spec, config = preset.spec, configs.with_changes(preset.train, keep)
    layers = []
    for layer in model_spec.layers:
        if isinstance(layer, specs.Conv2D) and "width" in params:
            layer = dataclasses.replace(layer, filters=max(1, round(layer.filters * params["width"])))
        if isinstance(layer, specs.Dropout) and "dropout" in params:
            layer = dataclasses.replace(layer, rate=float(params["dropout"]))
        layers.append(layer)
    model_spec = shapes.validate(dataclasses.replace(model_spec, layers=tuple(layers)))
    return model_spec, configs.with_changes(config, {k: v for k, v in params.items() if k in configs.FIELDS})
