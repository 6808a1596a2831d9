"""cifar_core.presets: the four named starting points, each valid, explained and trainable as configured."""

import pytest

from cifar_core import presets
from cifar_core import spec as S
from cifar_core.train import validate_config


def test_the_four_presets_in_workflow_order():
    assert list(presets.PRESETS) == ["report-2-1", "report-2-2", "fast", "tiny"]


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_each_preset_is_valid_named_and_explained(name):
    preset = presets.get_preset(name)
    assert preset.spec.name == name
    S.validate(preset.spec)
    validate_config(preset.train)
    assert preset.why.endswith(".") and len(preset.why) > 40


def test_the_report_presets_train_as_the_report_did():
    for name in ("report-2-1", "report-2-2"):
        config = presets.get_preset(name).train
        assert (config.optimizer, config.epochs, config.flip, config.translate) == ("adam", 5, False, 0)


def test_unknown_preset_names_the_choices():
    with pytest.raises(KeyError, match="report-2-1, report-2-2, fast, tiny"):
        presets.get_preset("resnet")
