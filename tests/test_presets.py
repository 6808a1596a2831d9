"""cifar_core.presets: the five named starting points, each valid, explained and trainable as configured."""

import dataclasses

import pytest

from cifar_core import presets, shapes
from cifar_core.config import TrainConfig, validate_config
from cifar_core.spec import Flatten, MaxPooling2D, ModelSpec


def test_the_five_presets_in_workflow_order():
    assert list(presets.PRESETS) == ["report-2-1", "report-2-2", "fast", "fast-small", "tiny"]


def test_fast_and_fast_small_train_as_airbench94_muon():
    fast, small = presets.get_preset("fast"), presets.get_preset("fast-small")
    for preset, epochs in ((fast, 9), (small, 12)):
        config = preset.train
        assert (config.epochs, config.batch_size, config.optimizer, config.learning_rate,
                config.filter_learning_rate, config.momentum, config.bias_lr_scale, config.weight_decay,
                config.label_smoothing) == (epochs, 1000, "muon", 0.825, 0.17, 0.85, 64.0, 0.016, 0.2)
        # no warm-up: from the peak straight down to 0, no lookahead; fast alone with the shifted test-time views
        assert (config.warmup_epochs, config.start_fraction, config.end_fraction, config.lookahead, config.tta) == \
            (0.0, 1.0, 0.0, False, "mirror-shift" if preset is fast else "mirror")
        assert preset.spec.logit_scale == pytest.approx(1 / 9)
        assert type(preset.spec.layers[0]).__name__ == "PatchWhitening"
    # a budget of fewer than 200 steps halves fast-small's batch (estimate.budget_batch); fast's keeps it
    assert (small.train.min_steps, fast.train.min_steps) == (200, None)


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_each_preset_is_valid_named_and_explained(name):
    preset = presets.get_preset(name)
    assert preset.spec.name == name
    shapes.validate(preset.spec)
    validate_config(preset.train)
    assert preset.why.endswith(".") and len(preset.why) > 40


def test_the_report_presets_train_as_the_report_did():
    for name in ("report-2-1", "report-2-2"):
        config = presets.get_preset(name).train
        assert (config.optimizer, config.epochs, config.flip, config.translate) == ("adam", 5, False, 0)


def test_unknown_preset_names_the_choices():
    with pytest.raises(KeyError, match="report-2-1, report-2-2, fast, fast-small, tiny"):
        presets.get_preset("resnet")


def test_which_preset_a_spec_is_and_the_settings_it_starts_from():
    tiny = presets.get_preset("tiny")
    assert presets.preset_named(tiny.spec) == "tiny" and presets.train_config_for(tiny.spec) == tiny.train
    edited = dataclasses.replace(tiny.spec, logit_scale=0.5)  # an edited preset keeps its preset's settings
    assert presets.preset_named(edited) is None and presets.train_config_for(edited) == tiny.train
    mine = ModelSpec("mine", tiny.spec.layers)
    assert presets.preset_named(mine) is None and presets.train_config_for(mine) == TrainConfig()


@pytest.mark.parametrize("name", ["fast", "fast-small"])
def test_an_edited_fast_preset_that_cannot_take_small_images_starts_at_full_size(name):
    preset = presets.get_preset(name)
    assert preset.train.low_res_fraction == 0.5 and presets.train_config_for(preset.spec) == preset.train
    older = dataclasses.replace(preset.spec, layers=(*preset.spec.layers[:-1], MaxPooling2D(3), Flatten()))
    assert presets.train_config_for(older) == dataclasses.replace(preset.train, low_res_fraction=0.0)
