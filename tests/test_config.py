"""cifar_core.config: each TrainConfig field's rules, and the validation, CLI flags and help made from them."""

import dataclasses
import subprocess
import sys

import pytest

from cifar_core import config as configs
from cifar_core import spec as S
from cifar_core.__main__ import main
from cifar_core.presets import get_preset


@pytest.mark.parametrize("field, value", [("epochs", 0), ("epochs", 10**6), ("epochs", 2.5), ("learning_rate", 0),
                                          ("learning_rate", -1e-3), ("learning_rate", 11), ("batch_size", 0),
                                          ("optimizer", "rmsprop"), ("translate", 9), ("flip", "yes"),
                                          ("limit", 0), ("precision", "float8"), ("warmup_epochs", 20),
                                          ("momentum", 1.0), ("bias_lr_scale", 0), ("start_fraction", 1.5),
                                          ("end_fraction", -0.1), ("lookahead", "yes"), ("tta", 1), ("tta", True),
                                          ("tta", "shift"), ("seed", -1), ("low_res_fraction", 1.0),
                                          ("low_res_fraction", -0.1), ("low_res_size", 7),
                                          ("seed", 2**70), ("learning_rate", float("nan")), ("epochs", True),
                                          ("data", 3)])
def test_validate_config_refuses(field, value):
    config = dataclasses.replace(configs.TrainConfig(), **{field: value})
    with pytest.raises(S.SpecError) as info:
        configs.validate_config(config)
    message = str(info.value)
    assert message.startswith(f"The training setting {field} must be") and repr(value) in message


def test_validate_config_accepts_the_presets_and_bounds():
    for name in ("tiny", "fast", "fast-small", "report-2-1", "report-2-2"):
        configs.validate_config(get_preset(name).train)
    configs.validate_config(dataclasses.replace(configs.TrainConfig(), epochs=1000, learning_rate=10, limit=1,
                                                seed=2**31 - 1))


def test_allowed_reads_the_bounds_from_the_field():
    assert configs.bounds("epochs") == (1, 1000) and configs.bounds("limit") == (1, None)
    assert configs.allowed("epochs") == "a whole number from 1 to 1000"
    assert configs.allowed("learning_rate") == "a number in (0, 10]"
    assert configs.allowed("momentum") == "a number in [0, 1)"
    assert configs.allowed("limit") == "empty or a whole number of at least 1"
    assert configs.allowed("optimizer") == "one of adam, adamw, sgd, muon"
    assert configs.allowed("seed") == "a whole number from 0 to 2,147,483,647"
    assert configs.describe("translate") == ("random translation of training images (reflect padding, then crop); "
                                             "in pixels; a whole number from 0 to 8; default 2.")
    # in words, not Python, and the default a page starts from where it is given (a preset's)
    assert configs.describe("limit").endswith("; default empty.")
    assert configs.describe("precision").endswith("; default auto.")
    assert configs.describe("learning_rate", 0.003).endswith("; default 0.003.")
    assert configs.describe("flip", False).endswith("; default off.") and configs.describe("flip").endswith(" on.")


def test_every_field_has_help_and_a_group():
    for name, field in configs.FIELDS.items():
        assert field.metadata["help"] and field.metadata["group"] in ("basic", "recipe", "hidden"), name
        assert configs.kind(name) in (bool, int, float, str)


def test_the_fields_of_each_group_in_the_train_pages_order():
    assert configs.fields_in("basic") == ["epochs", "minutes", "batch_size", "optimizer", "learning_rate", "schedule",
                                          "warmup_epochs", "weight_decay", "label_smoothing", "flip", "translate",
                                          "data", "limit", "precision"]
    assert configs.fields_in("recipe") == ["momentum", "filter_learning_rate", "bias_lr_scale", "start_fraction",
                                           "end_fraction", "low_res_fraction", "low_res_size", "min_steps", "lookahead",
                                           "tta"]
    assert configs.fields_in("hidden") == ["seed", "strategy"] and configs.fields_in("advanced") == []


WARMED_UP = configs.TrainConfig(epochs=12, warmup_epochs=2.76, schedule="one-cycle")  # airbench94's 23%


def test_with_epochs_keeps_the_warm_up_share():
    config = configs.with_epochs(WARMED_UP, 4)
    assert (config.epochs, config.warmup_epochs) == (4, 0.92)  # 23% of the schedule, as in 12 epochs
    configs.validate_config(configs.with_epochs(WARMED_UP, 1))


def test_with_batch_size_scales_the_rates_as_the_optimizer_needs():
    sgd = configs.with_batch_size(configs.TrainConfig(optimizer="sgd", batch_size=1024, learning_rate=1.5), 256)
    assert (sgd.batch_size, sgd.learning_rate) == (256, 0.375)  # a mean loss: the rate follows the batch
    muon = configs.with_batch_size(configs.TrainConfig(optimizer="muon", batch_size=1000, learning_rate=0.825,
                                                       filter_learning_rate=0.18), 250)
    assert (muon.batch_size, muon.learning_rate, muon.filter_learning_rate) == (250, 0.20625, 0.09)  # kernels: root
    adam = configs.with_batch_size(configs.TrainConfig(optimizer="adam", batch_size=128, learning_rate=1e-3), 32)
    assert adam.learning_rate == pytest.approx(5e-4)
    assert configs.with_batch_size(sgd, 256) == sgd


def test_with_changes_keeps_the_warm_up_share_unless_one_is_given():
    assert configs.with_changes(WARMED_UP, {"epochs": 2}).warmup_epochs == 0.46  # 2.76 of 12 epochs: 23%
    assert configs.with_changes(WARMED_UP, {"epochs": 4, "warmup_epochs": 0.0}).warmup_epochs == 0.0
    assert configs.with_changes(WARMED_UP, {"learning_rate": 0.5}) == dataclasses.replace(WARMED_UP, learning_rate=0.5)
    for bad in ({"epochs": 0}, {"epochs": "2"}, {"epochs": True}):
        with pytest.raises(S.SpecError, match="epochs"):
            configs.with_changes(WARMED_UP, bad)


def test_a_batch_or_rate_asked_for_is_not_halved_by_a_budget():
    budgeted = configs.TrainConfig(minutes=4.0, batch_size=1000, min_steps=200)
    assert configs.with_changes(budgeted, {"batch_size": 500}).min_steps is None
    assert configs.with_changes(budgeted, {"learning_rate": 0.5}).min_steps is None
    assert configs.with_changes(budgeted, {"batch_size": 500, "min_steps": 100}).min_steps == 100
    assert configs.with_changes(budgeted, {"epochs": 3, "minutes": 2.0}).min_steps == 200


def test_config_from_dict_refuses_unknown_settings_and_other_shapes():
    with pytest.raises(S.SpecError, match="Unknown training setting.*nesterov"):
        configs.config_from_dict({"epochs": 2, "nesterov": True})
    for data in ([1, 2], None, "epochs"):
        with pytest.raises(S.SpecError, match="must be a JSON object"):
            configs.config_from_dict(data)
    assert configs.config_from_dict({"epochs": 2, "learning_rate": 1}).learning_rate == 1.0


def test_the_cli_flags_come_from_the_fields():
    help_text = subprocess.run([sys.executable, "-m", "cifar_core", "train", "--help"], capture_output=True,
                               text=True, timeout=60).stdout
    for name in configs.FIELDS:
        assert "--" + name.replace("_", "-") in help_text, name
    assert "a whole number from 1 to 1000" in " ".join(help_text.split())


def test_a_bad_flag_value_is_one_sentence(capsys, tmp_path):
    assert main(["train", "--preset", "tiny", "--seed", "-1", "--runs-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == ("error: The training setting seed must be a whole number from 0 to "
                                       "2,147,483,647, got -1.\n")
    assert not list(tmp_path.iterdir())


def test_runs_saved_before_the_tta_modes_still_read():
    assert configs.config_from_dict({"tta": True}).tta == "mirror"
    assert configs.config_from_dict({"tta": False}).tta == "off"
    assert configs.config_from_dict({"tta": "mirror-shift"}).tta == "mirror-shift"
    assert [configs.tta_mode(v) for v in (True, False, None, "mirror", "tilt", 1)] == \
        ["mirror", "off", "off", "mirror", "off", "off"]


def test_setting_problem_names_one_value_on_its_own():
    assert configs.setting_problem("epochs", 0) == \
        "The training setting epochs must be a whole number from 1 to 1000, got 0."
    assert configs.setting_problem("minutes", None) is None and configs.setting_problem("epochs", 3) is None
    assert configs.setting_problem("learning_rate", 2) is None  # an integer is a number
    assert configs.setting_problem("learning_rate", float("nan")) is not None
