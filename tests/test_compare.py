"""cifar_core.compare: only the differences, layers aligned by type, settings by field, final metrics, sweep
parameters; torn files give fewer rows, never an exception."""

import dataclasses
import json

from cifar_core import compare, metrics, runs, spec_io
from cifar_core import spec as S
from cifar_core.config import TrainConfig, to_dict
from cifar_core.presets import get_preset

TINY = get_preset("tiny")


def test_spec_diff_aligns_layers_and_shows_only_differences():
    a = spec_io.to_dict(TINY.spec)
    wider = list(TINY.spec.layers)
    wider[2] = dataclasses.replace(wider[2], filters=64)
    wider.insert(4, S.Dropout(0.1))  # after the second pooling
    b = spec_io.to_dict(dataclasses.replace(TINY.spec, name="tiny-wide", layers=tuple(wider)))
    assert compare.spec_diff(a, b) == [
        {"where": "model", "field": "name", "a": "tiny", "b": "tiny-wide"},
        {"where": "layer 3 (Conv2D)", "field": "filters", "a": 32, "b": 64},
        {"where": "layer 5 (Dropout)", "field": "layer", "a": None, "b": "Dropout(rate=0.1)"},
    ]
    assert compare.spec_diff(a, a) == []
    # a field left out means its default, as from_dict reads it
    short = {**a, "layers": [{"type": "Conv2D", "filters": 16}] + a["layers"][1:]}
    assert compare.spec_diff(a, short) == []
    assert compare.spec_diff(a, {"layers": "torn"})[0]["field"] == "name"
    assert compare.spec_diff(None, None) == []
    # more layers than any spec this tool builds: not aligned (quadratic: 8,000 layers had taken 19 s), said so
    huge = {**a, "layers": [{"type": "Dense", "units": 4}] * 20_000}
    assert compare.spec_diff(a, huge) == [{"where": "model", "field": "layers", "a": f"{len(a['layers'])} layers",
                                           "b": "20,000 layers"}]


def test_settings_diff_field_by_field():
    a = to_dict(TINY.train)
    b = {**a, "learning_rate": 0.01, "epochs": 3}
    b.pop("flip")  # missing: its default (True), as in tiny
    assert compare.settings_diff(a, b) == [{"field": "epochs", "a": 20, "b": 3},
                                           {"field": "learning_rate", "a": 0.003, "b": 0.01}]
    assert compare.settings_diff({}, to_dict(TrainConfig())) == []
    # a time budget's runs differ in their budgets, not in their unused Epochs boxes
    budget = {**to_dict(TrainConfig()), "minutes": 0.5}
    assert compare.settings_diff(budget, {**budget, "epochs": 2, "minutes": 0.25}) == [
        {"field": "minutes", "a": 0.5, "b": 0.25}]
    assert compare.settings_diff(budget, {**budget, "minutes": None, "epochs": 3}) == [
        {"field": "epochs", "a": None, "b": 3}, {"field": "minutes", "a": 0.5, "b": None}]
    # a run saved before the TTA modes (tta true) used the mirror, as tta "mirror" does now
    assert compare.settings_diff({**a, "tta": True}, {**a, "tta": "mirror"}) == []
    assert compare.settings_diff({**a, "tta": False}, {**a, "tta": "mirror"}) == [
        {"field": "tta", "a": "off", "b": "mirror"}]


def test_compare_runs_of_one_sweep(tmp_path):
    dirs = []
    for n, lr in enumerate((1e-3, 1e-2)):
        run_dir = runs.create_run(tmp_path / f"run{n}", TINY.spec, dataclasses.replace(TINY.train, learning_rate=lr),
                                  sweep={"study": "s", "trial": n, "params": {"learning_rate": lr}})
        metrics.append_metrics(run_dir, [{"kind": "epoch", "epoch": 1, "step": 5, "time": 2.0 + n, "loss": 2.0,
                                       "accuracy": 0.2, "val_loss": 2.1, "val_accuracy": 0.25 + n / 10}])
        dirs.append(run_dir)
    result = compare.compare_runs(*dirs)
    assert result["spec"] == []
    assert result["train"] == [{"field": "learning_rate", "a": 1e-3, "b": 1e-2}]
    assert result["metrics"]["b"] == {"val_accuracy": 0.35, "val_loss": 2.1, "accuracy": 0.2, "loss": 2.0,
                                      "best_val_accuracy": 0.35, "epochs_done": 1, "train_time_s": 3.0}
    assert result["sweep"] == {"study": "s", "trials": (0, 1),
                               "params": [{"field": "learning_rate", "a": 1e-3, "b": 1e-2}]}
    config = json.loads((dirs[1] / "config.json").read_text())
    for trial in ("![x](https://example.com/pixel.png)", True, None, 1.5):  # what the page would put in Markdown
        (dirs[1] / "config.json").write_text(json.dumps({**config, "sweep": {**config["sweep"], "trial": trial}}))
        assert compare.compare_runs(*dirs)["sweep"] is None
    (dirs[1] / "config.json").write_text("{torn")
    torn = compare.compare_runs(*dirs)
    assert torn["sweep"] is None and torn["metrics"]["b"]["epochs_done"] == 1


def test_metrics_rows_and_the_default_pair():
    diff = {"metrics": {"a": {"val_accuracy": 0.5, "val_loss": 1.23456, "epochs_done": 3, "train_time_s": 3.0},
                        "b": {"val_accuracy": None, "val_loss": float("nan"), "epochs_done": 12,
                              "train_time_s": 754.0}}}
    assert compare.metrics_rows(diff) == [
        {"metric": "validation accuracy (last epoch)", "A": "50.0%", "B": "–"},
        {"metric": "validation loss (last epoch)", "A": "1.235", "B": "nan"},
        {"metric": "epochs done", "A": "3", "B": "12"},
        {"metric": "training time", "A": "3 s", "B": "12.6 min"}]
    assert compare.default_pair(["c", "b", "a"], []) == ("c", "b")
    assert compare.default_pair(["c", "b", "a"], ["a"]) == ("c", "b")  # one selected row is not a pair
    assert compare.default_pair(["c", "b", "a"], ["b", "a", "c"]) == ("b", "a")
    assert compare.default_pair(["c"], []) == ("c", "c")
