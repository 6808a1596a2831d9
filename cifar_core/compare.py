"""What changed between two runs: the spec layer by layer, the training settings field by field (only the
differences), the final metrics side by side, and for two trials of one sweep their parameters.

Layers are aligned with difflib's longest matching run of layer types, so a layer inserted in the middle shows as
one added layer rather than every later layer changed. Everything is read from config.json and metrics.jsonl with
the defensive readers of runs.py: a torn or hostile file gives fewer differences, never an exception.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path

from . import config as configs
from . import metrics, runs
from . import spec as specs

HEADER = ("name", "input_shape", "num_classes", "logit_scale")
FINAL_METRICS = ("val_accuracy", "val_loss", "accuracy", "loss")


def _layers(spec: dict) -> list[dict]:
    layers = spec.get("layers") if isinstance(spec, dict) else None
    return [layer if isinstance(layer, dict) else {"type": "?"} for layer in layers] if isinstance(layers, list) \
        else []


def _layer_defaults(kind) -> dict:
    cls = specs.LAYER_TYPES.get(kind) if isinstance(kind, str) else None
    return {f.name: f.default for f in dataclasses.fields(cls)} if cls else {}


def _layer_name(index: int, layer: dict) -> str:
    return f"layer {index} ({layer.get('type', '?')})"


def spec_diff(a: dict, b: dict) -> list[dict]:
    """Rows {where, field, a, b}: header fields that differ, then per aligned layer the fields that differ, and
    layers only one spec has (field 'layer', the other side None)."""
    a, b = (a if isinstance(a, dict) else {}), (b if isinstance(b, dict) else {})
    rows = [{"where": "model", "field": key, "a": a.get(key), "b": b.get(key)} for key in HEADER
            if a.get(key) != b.get(key)]
    la, lb = _layers(a), _layers(b)
    if max(len(la), len(lb)) > specs.MAX_LAYERS:  # no spec this tool builds; aligning 8,000 layers had taken 19 s
        return rows + [{"where": "model", "field": "layers", "a": f"{len(la):,} layers", "b": f"{len(lb):,} layers"}]
    matcher = difflib.SequenceMatcher(a=[str(x.get("type")) for x in la], b=[str(x.get("type")) for x in lb],
                                      autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal" or (op == "replace" and i2 - i1 == j2 - j1):
            for i, j in zip(range(i1, i2), range(j1, j2)):
                rows += _layer_rows(i + 1, la[i], j + 1, lb[j])
            continue
        for i in range(i1, i2):
            rows.append({"where": _layer_name(i + 1, la[i]), "field": "layer", "a": _describe(la[i]), "b": None})
        for j in range(j1, j2):
            rows.append({"where": _layer_name(j + 1, lb[j]), "field": "layer", "a": None, "b": _describe(lb[j])})
    return rows


def _layer_rows(ia: int, x: dict, ib: int, y: dict) -> list[dict]:
    where = _layer_name(ia, x) if ia == ib else f"{_layer_name(ia, x)} / {_layer_name(ib, y)}"
    if x.get("type") != y.get("type"):
        return [{"where": where, "field": "type", "a": x.get("type"), "b": y.get("type")}]
    defaults = _layer_defaults(x.get("type"))
    keys = [k for k in {**x, **y} if k != "type"]
    return [{"where": where, "field": k, "a": x.get(k, defaults.get(k)), "b": y.get(k, defaults.get(k))}
            for k in keys if x.get(k, defaults.get(k)) != y.get(k, defaults.get(k))]


def _describe(layer: dict) -> str:
    fields = ", ".join(f"{k}={v}" for k, v in layer.items() if k != "type")
    return f"{layer.get('type', '?')}({fields})"


def settings_diff(a: dict, b: dict) -> list[dict]:
    """Rows {field, a, b} for the TrainConfig fields whose values differ (a missing field counts as its default);
    unknown keys are compared too, after the known ones."""
    a, b = (a if isinstance(a, dict) else {}), (b if isinstance(b, dict) else {})
    a, b = ({**c, "tta": configs.tta_mode(c["tta"])} if "tta" in c else c for c in (a, b))  # tta true is mirror
    # a time budget's run trains the epochs its budget holds: its Epochs box is unused, not a difference
    a, b = ({**c, "epochs": None} if c.get("minutes") is not None else c for c in (a, b))
    defaults = configs.to_dict(configs.TrainConfig())
    keys = list(configs.FIELDS) + sorted(k for k in {**a, **b} if k not in configs.FIELDS and isinstance(k, str))
    return [{"field": k, "a": a.get(k, defaults.get(k)), "b": b.get(k, defaults.get(k))} for k in keys
            if a.get(k, defaults.get(k)) != b.get(k, defaults.get(k))]


def final_metrics(run_dir: Path) -> dict:
    """The last epoch's metrics, the best validation accuracy, epochs done and training time."""
    epochs = metrics.epoch_records(run_dir)
    last = epochs[-1] if epochs else {}
    row = {key: last.get(key) for key in FINAL_METRICS}
    val = [r["val_accuracy"] for r in epochs if r.get("val_accuracy") is not None]
    row.update(best_val_accuracy=max(val) if val else None, epochs_done=len(epochs), train_time_s=last.get("time"))
    return row


def _sweep(config: dict) -> dict | None:
    """The run's sweep entry, if it is one a trial writes: a study name, a trial number and a dict of parameters."""
    sweep = config.get("sweep")
    if not (isinstance(sweep, dict) and isinstance(sweep.get("params"), dict) and isinstance(sweep.get("study"), str)
            and isinstance(sweep.get("trial"), int) and not isinstance(sweep["trial"], bool)):
        return None
    return sweep


def compare_runs(run_a: Path, run_b: Path) -> dict:
    """{spec, train, metrics: {a, b}, sweep}: spec_diff and settings_diff of the two config.json files, their final
    metrics, and, for two trials of the same study, {study, trials, params: rows {field, a, b} of every
    parameter}."""
    ca, cb = runs.read_config(run_a), runs.read_config(run_b)
    sa, sb = _sweep(ca), _sweep(cb)
    sweep = None
    if sa and sb and sa.get("study") == sb.get("study"):
        keys = list(dict.fromkeys([*sa["params"], *sb["params"]]))
        sweep = {"study": sa.get("study"), "trials": (sa.get("trial"), sb.get("trial")),
                 "params": [{"field": k, "a": sa["params"].get(k), "b": sb["params"].get(k)} for k in keys]}
    return {"spec": spec_diff(ca.get("spec"), cb.get("spec")), "train": settings_diff(ca.get("train"), cb.get("train")),
            "metrics": {"a": final_metrics(run_a), "b": final_metrics(run_b)}, "sweep": sweep}


METRIC_WORDS = {"val_accuracy": "validation accuracy (last epoch)", "val_loss": "validation loss (last epoch)",
                "accuracy": "training accuracy (last epoch)", "loss": "training loss (last epoch)",
                "best_val_accuracy": "best validation accuracy", "epochs_done": "epochs done",
                "train_time_s": "training time"}


def shown(key: str, value) -> str:
    """A final metric as the table shows it: accuracies in percent to a tenth, losses to three decimals, the
    training time in seconds or minutes; "–" for none."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "–"
    if key.endswith("accuracy"):
        return f"{value:.1%}"
    if key.endswith("loss"):
        return f"{value:.3f}"
    if key == "train_time_s":
        return f"{value:.0f} s" if value < 60 else f"{value / 60:.1f} min"
    return f"{value:g}"


def metrics_rows(diff: dict) -> list[dict]:
    """compare_runs' final metrics side by side: rows {metric (in words), A, B} of text (shown)."""
    a, b = diff["metrics"]["a"], diff["metrics"]["b"]
    return [{"metric": METRIC_WORDS.get(k, k.replace("_", " ")), "A": shown(k, a[k]), "B": shown(k, b[k])}
            for k in a]


def default_pair(run_ids: list[str], selected: list[str]) -> tuple[str, str]:
    """The two runs compared until the user picks others: the first two selected, else the first two listed (the
    newest); the one run twice when there is only one."""
    pair = selected[:2] if len(selected) >= 2 else run_ids[:2]
    return pair[0], pair[-1]
