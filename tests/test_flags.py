"""cifar_core.flags: one flag per TrainConfig field, read back into a spec and checked settings."""

import argparse
import dataclasses
import json

import pytest

from cifar_core import config as configs
from cifar_core import flags, presets, spec_io
from cifar_core import spec as specs


def parsed(*argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset")
    parser.add_argument("--spec")
    parser.add_argument("--config")
    flags.add_config_flags(parser)
    return parser.parse_args(list(argv))


def test_every_field_has_its_flag_and_only_given_flags_are_overrides():
    args = parsed("--epochs", "3", "--no-flip", "--learning-rate", "0.5")
    assert all(hasattr(args, name) for name in configs.FIELDS)
    assert flags.overrides(args) == {"epochs": 3, "flip": False, "learning_rate": 0.5}


def test_a_flag_outside_its_choices_is_refused_by_the_parser():
    with pytest.raises(SystemExit):
        parsed("--optimizer", "rmsprop")


def test_fewer_epochs_by_flag_keep_the_config_files_warm_up_share(tmp_path):
    changes = tmp_path / "warmed.json"
    changes.write_text('{"epochs": 12, "warmup_epochs": 2.76, "schedule": "one-cycle"}')
    _, config = flags.new_run_settings(parsed("--preset", "tiny", "--config", str(changes), "--epochs", "2"))
    assert config.epochs == 2 and config.warmup_epochs == 0.46  # 23% of 2 epochs, as the file's 2.76 of 12


def test_flags_win_over_the_config_file_which_wins_over_the_preset(tmp_path):
    changes = tmp_path / "c.json"
    changes.write_text(json.dumps({"epochs": 4, "batch_size": 32}))
    model_spec, config = flags.new_run_settings(parsed("--preset", "tiny", "--config", str(changes), "--epochs", "2"))
    assert model_spec == presets.PRESETS["tiny"].spec
    tiny = presets.PRESETS["tiny"].train
    assert (config.epochs, config.batch_size, config.learning_rate) == (2, 32, tiny.learning_rate)


def test_a_spec_file_of_another_name_starts_from_the_default_settings(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(spec_io.to_json(dataclasses.replace(presets.PRESETS["tiny"].spec, name="mine")))
    model_spec, config = flags.new_run_settings(parsed("--spec", str(path)))
    assert model_spec.name == "mine" and config == configs.TrainConfig()


def test_a_spec_file_with_a_presets_name_starts_from_its_settings_as_on_the_train_page(tmp_path):
    fast = presets.PRESETS["fast"]
    layers = fast.spec.layers
    narrower = dataclasses.replace(layers[2], filters=32)
    edited = dataclasses.replace(fast.spec, layers=(*layers[:2], narrower, *layers[3:]))
    path = tmp_path / "spec.json"
    path.write_text(spec_io.to_json(edited))
    _, config = flags.new_run_settings(parsed("--spec", str(path), "--epochs", "3"))
    assert config == dataclasses.replace(fast.train, epochs=3) != configs.TrainConfig()
    flattened = dataclasses.replace(fast.spec, layers=fast.spec.layers[:-1] + (specs.Flatten(),))
    path.write_text(spec_io.to_json(flattened))
    _, config = flags.new_run_settings(parsed("--spec", str(path)))
    assert config == dataclasses.replace(fast.train, low_res_fraction=0.0)  # a Flatten cannot take 24-pixel images


@pytest.mark.parametrize("argv, words", [
    ((), "exactly one of --preset"),
    (("--preset", "tiny", "--spec", "x.json"), "exactly one of --preset"),
    (("--spec", "/no/such/spec.json"), "--spec /no/such/spec.json cannot be read"),
])
def test_the_model_flags_are_checked_in_one_sentence(argv, words):
    with pytest.raises(specs.SpecError, match=words):
        flags.new_run_settings(parsed(*argv))


def test_a_config_file_that_is_not_an_object_or_too_large_is_refused(tmp_path):
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(specs.SpecError, match="--config must be a JSON object"):
        flags.new_run_settings(parsed("--preset", "tiny", "--config", str(listed)))
    huge = tmp_path / "huge.json"
    huge.write_bytes(b" " * (flags.files.MAX_JSON_BYTES + 1))
    with pytest.raises(specs.SpecError, match="larger than"):
        flags.read_text(str(huge), "--config")


def test_a_bad_value_names_its_field(tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        flags.new_run_settings(parsed("--preset", "tiny", "--epochs", "0"))
