"""cifar_core.estimate: the epoch time from the constants (hand-computed), the mix of a low-resolution run's two
sizes, the speed a device measured in its runs, and the first guess of a time budget's steps."""

import dataclasses

import helpers
import pytest

from cifar_core import config as configs
from cifar_core import estimate, metrics, runs, shapes
from cifar_core import spec as S
from cifar_core.presets import get_preset

TINY = get_preset("tiny").spec


def test_epoch_seconds():
    # tiny: 1,622,336 MACs per image; 1000 x (0.094 ms + 1,622,336 x 0.0211 ns) = 0.094 + 0.0342 s in bfloat16
    bfloat16 = estimate.epoch_seconds(TINY, 1000, precision="mixed_bfloat16")
    assert bfloat16 == pytest.approx(0.094 + 1_622_336 * 0.0211e-6)
    # fast: 118,147,360 MACs; 45,000 images -> about 116 s, the mean epoch measured on the BF16 CPU
    assert 105 < estimate.epoch_seconds(get_preset("fast").spec, 45_000, precision="mixed_bfloat16") < 125
    # float32 (a plain AVX2 CPU): fast-small 19,887,392 MACs -> 45,000 x (0.312 ms + 2.231 ms) = 114 s; measured
    # there 2.72 ms an image, 122 s
    assert estimate.epoch_seconds(get_preset("fast-small").spec, 45_000) == pytest.approx(
        45_000 * (0.312e-3 + 19_887_392 * 0.1122e-9))
    assert 0.75 * 122 < estimate.epoch_seconds(get_preset("fast-small").spec, 45_000, precision="float32") < 1.25 * 122
    assert estimate.epoch_seconds(TINY, 1000, precision="mixed_float16") == estimate.epoch_seconds(TINY, 1000)
    with pytest.raises(S.SpecError):
        estimate.epoch_seconds(S.ModelSpec("bad", (S.Conv2D(8),)), 10)


def test_the_estimate_of_a_low_resolution_run_mixes_its_two_sizes():
    config = configs.TrainConfig(low_res_fraction=0.25, low_res_size=16)
    full, small = estimate.epoch_seconds(TINY, 1000), estimate.epoch_seconds(shapes.at_size(TINY, 16), 1000)
    assert small < full and estimate.epoch_seconds(TINY, 1000, 2.0, config) == pytest.approx(
        2.0 * (0.25 * small + 0.75 * full))
    assert estimate.low_res_cost_ratio(TINY, config) == pytest.approx(small / full)


def test_budget_steps_is_the_budget_over_the_estimated_step():
    config = configs.TrainConfig(minutes=1.0)
    per_step = estimate.epoch_seconds(TINY, 1000) / 10
    assert estimate.budget_steps(TINY, config, 1000, 10) == int(60 / per_step)


def test_a_short_budget_halves_the_batch_until_it_holds_min_steps():
    epoch = estimate.epoch_seconds(TINY, 1000)  # float32's constants
    config = configs.TrainConfig(minutes=3 * epoch / 60, batch_size=100, optimizer="sgd", learning_rate=0.4,
                                 min_steps=50)  # 3 epochs of 10 steps: 30 steps
    assert estimate.budget_epochs(TINY, config, 1000) == pytest.approx(3)
    half = estimate.budget_batch(TINY, config, 1000)
    assert (half.batch_size, half.learning_rate, half.min_steps) == (50, 0.2, None)  # 60 steps; done once
    assert estimate.budget_batch(TINY, config, 1000, replicas=2).batch_size == 25  # 2 x 25 a step: 60 steps
    assert estimate.budget_batch(TINY, config, 1000, speed=2.0).batch_size == 25  # half the epochs
    # a quarter of the batch at most, however short the budget
    assert estimate.budget_batch(TINY, dataclasses.replace(config, min_steps=10_000), 1000).batch_size == 25
    for enough in (dataclasses.replace(config, min_steps=25), dataclasses.replace(config, min_steps=None),
                   dataclasses.replace(config, minutes=None, min_steps=10_000)):
        assert estimate.budget_batch(TINY, enough, 1000) is enough


def past_run(root, run_id, device, times, steps=(29, 29, 29), config=None, **facts):
    run = runs.create_run(root / run_id, TINY, config or helpers.tiny_config())
    runs.write_config(run, **{"device": device, "precision": "float32",
                              "data_splits": {"train": 1000, "val": 100, "test": 0}, **facts})
    metrics.append_metrics(run, [{"kind": "epoch", "epoch": e + 1, "step": s, "time": t}
                                 for e, (t, s) in enumerate(zip(times, steps))])
    return run


def test_the_epoch_estimate_learns_this_devices_speed_from_its_runs(tmp_path):
    seconds = estimate.epoch_seconds(TINY, 1000)
    assert estimate.measured_speed("CPU: here", "float32", tmp_path) == (1.0, 0)  # nothing measured yet: the constants
    past_run(tmp_path, "20260101-000001-a", "CPU: here", [9.0, 9.0 + 2 * seconds, 9.0 + 4 * seconds])  # 2x slow
    past_run(tmp_path, "20260101-000002-b", "CPU: elsewhere", [1.0, 1.0 + seconds / 4, 1.0 + seconds / 2])
    past_run(tmp_path, "20260101-000003-c", "CPU: here", [5.0, 5.0 + 4 * seconds, 5.0 + 4 * seconds + 1],
             steps=(29, 29, 3))  # the last epoch was cut short by a time budget: not a whole epoch
    speed, used = estimate.measured_speed("CPU: here", "float32", tmp_path)
    assert used == 2 and speed == pytest.approx(3.0)  # the median of 2x and 4x; the first epochs left out
    assert estimate.epoch_seconds(TINY, 1000, speed) == pytest.approx(3 * seconds)
    assert estimate.measured_speed("CPU: elsewhere", "float32", tmp_path) == (pytest.approx(0.25), 1)
    # the newest only
    assert estimate.measured_speed("CPU: here", "float32", tmp_path, recent=1) == (pytest.approx(4.0), 1)
    # a torn or edited record's times (an epoch of 1e308 s) are no device's speed: skipped
    past_run(tmp_path, "20260101-000004-d", "CPU: torn", [-1e308, 1e308, 1e308])
    assert estimate.measured_speed("CPU: torn", "float32", tmp_path) == (1.0, 0)


def test_the_speed_of_a_low_resolution_run_counts_its_small_epochs_as_small(tmp_path):
    config = helpers.tiny_config(epochs=4, low_res_fraction=0.5, low_res_size=16)
    full, small = estimate.epoch_seconds(TINY, 1000), estimate.epoch_seconds(shapes.at_size(TINY, 16), 1000)
    run = runs.create_run(tmp_path / "20260101-000001-a", TINY, config)
    runs.write_config(run, device="CPU: here", precision="float32", data_splits={"train": 1000, "val": 100, "test": 0})
    ends = [9.0, 9.0 + 2 * small, 9.0 + 2 * small + 2 * full, 9.0 + 2 * small + 4 * full]  # all twice as slow
    metrics.append_metrics(run, [{"kind": "epoch", "epoch": e + 1, "step": 29, "time": t, "low_res_switch": 58}
                                 for e, t in enumerate(ends)])
    assert estimate.measured_speed("CPU: here", "float32", tmp_path) == (pytest.approx(2.0), 1)
    past_run(tmp_path, "20260101-000002-b", "CPU: here", [1.0, 2.0], steps=(None, None), config=config,
             train={**configs.to_dict(config), "a_setting_since_removed": 1})  # newer, so read first
    # no whole step: skipped
    assert estimate.measured_speed("CPU: here", "float32", tmp_path) == (pytest.approx(2.0), 1)


def test_torn_run_files_are_skipped(tmp_path):
    seconds = estimate.epoch_seconds(TINY, 1000)
    past_run(tmp_path, "20260101-000001-a", "CPU: here", [9.0, 9.0 + 2 * seconds, 9.0 + 4 * seconds])
    for n, facts in enumerate(({"data_splits": {"train": "1000"}}, {"data_splits": [1000]},
                               {"spec": {"layers": "torn"}}, {"train": {"low_res_fraction": "half"}})):
        past_run(tmp_path, f"2026010{n + 2}-000001-t", "CPU: here", [1.0, 1.0 + seconds, 1.0 + 2 * seconds],
                 **facts)
    assert estimate.measured_speed("CPU: here", "float32", tmp_path) == (pytest.approx(2.0), 1)


def test_a_runs_speed_counts_only_for_the_precision_it_trained_in(tmp_path):
    # the same CPU trains float32 and bfloat16 at different ratios to their constants: neither stands in for the other
    seconds = estimate.epoch_seconds(TINY, 1000, precision="mixed_bfloat16")
    past_run(tmp_path, "20260101-000001-a", "CPU: here", [9.0, 9.0 + 2 * seconds, 9.0 + 4 * seconds],
             precision="mixed_bfloat16")
    assert estimate.measured_speed("CPU: here", "float32", tmp_path) == (1.0, 0)
    assert estimate.measured_speed("CPU: here", "mixed_bfloat16", tmp_path) == (pytest.approx(2.0), 1)
