"""A spec in and out: as a dict (a run's config.json), as JSON (the Build page's download and upload, `--spec`), and
one layer as the Build page's settings text ('filters=64, padding=valid'), a stack as its compact table's rows.

A whole spec read here (from_dict, from_json) ends in shapes.validate, so it is one the builder can build; a single
layer only has its fields checked, since whether it fits depends on its neighbours. Kept apart from spec.py so that
the vocabulary every module shares needs neither files nor shapes: spec_io -> shapes -> spec, no circle.
"""

from __future__ import annotations

import dataclasses
import json
import math

from . import files
from .shapes import validate
from .spec import LAYER_TYPES, MAX_LAYERS, MAX_SPEC_BYTES, Flatten, ModelSpec, SpecError, check_layer_fields


def layer_to_dict(layer) -> dict:
    return {"type": type(layer).__name__, **dataclasses.asdict(layer)}


def layer_from_dict(data: dict, index: int = 0):
    if not isinstance(data, dict):
        raise SpecError(f"layer {index}: expected an object with a 'type', got {type(data).__name__}.")
    kind = data.get("type")
    if "type" not in data:
        raise SpecError(f"layer {index} has no 'type'; give one of {', '.join(LAYER_TYPES)}.")
    if not isinstance(kind, str) or kind not in LAYER_TYPES:
        raise SpecError(f"layer {index}: unknown layer type {kind!r}; allowed: {', '.join(LAYER_TYPES)}.")
    cls = LAYER_TYPES[kind]
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - allowed - {"type"})
    if unknown:
        raise SpecError(f"layer {index} ({kind}): unknown key(s) {', '.join(unknown)}; allowed: "
                        f"{', '.join(sorted(allowed)) or 'none'}.")
    layer = cls(**{k: v for k, v in data.items() if k != "type"})
    check_layer_fields(index, layer)
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
    # A whole number past a float's range (400 nines, pasted) is an infinity, which the layer's check refuses by name.
    data.update({k: float(v) if abs(v) < 2**1000 else math.inf if v > 0 else -math.inf for k, v in data.items()
                 if k in floats and isinstance(v, int) and not isinstance(v, bool)})
    return layer_from_dict(data, index)


def table_rows(spec: ModelSpec) -> list[dict]:
    """The Build page's compact table: one row a layer, {"type": "Conv2D", "settings": layer_settings(layer)}."""
    return [{"type": type(layer).__name__, "settings": layer_settings(layer)} for layer in spec.layers]


def layers_from_table(rows: list[dict], edits: dict) -> tuple:
    """The layers of table_rows' `rows` after a st.data_editor's `edits` ({"deleted_rows": [i], "edited_rows":
    {"i": {column: value}}, "added_rows": [{column: value}]}); an added row's missing columns are type Conv2D and no
    settings (the type's defaults). SpecError (layer_from_settings') at the first row that is not a layer."""
    # In Streamlit's own order (data_editor's _apply_dataframe_edits): the edits and the deletions both name rows
    # by their place in the table as it was shown, so the edits go first, then the deletions, then the additions.
    rows = list(rows)
    for i, change in edits.get("edited_rows", {}).items():
        if 0 <= int(i) < len(rows):  # a stale editor state may name rows the table no longer has
            rows[int(i)] = {**rows[int(i)], **change}
    deleted = {int(i) for i in edits.get("deleted_rows", [])}
    rows = [row for n, row in enumerate(rows) if n not in deleted]
    rows += [{"type": "Conv2D", "settings": "", **added} for added in edits.get("added_rows", [])]
    return tuple(layer_from_settings(r["type"], r.get("settings"), n) for n, r in enumerate(rows, 1))


__all__ = ["to_dict", "from_dict", "to_json", "from_json", "layer_to_dict", "layer_from_dict"]
