"""cifar_core.space: a sweep's search space checked with one sentence each, a default that suits the model, and the
parameters applied to a spec and its settings."""

import dataclasses

import pytest

from cifar_core import space as spaces
from cifar_core import spec as S
from cifar_core.presets import get_preset

TINY = get_preset("tiny")


def test_space_is_checked_with_one_sentence_each():
    assert spaces.check_space({"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}}) == \
        {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}}
    cases = {
        "unknown entry 'filters'": {"filters": {"low": 1, "high": 2}},
        "low 0.5 above high 0.1": {"learning_rate": {"low": 0.5, "high": 0.1}},
        "log scale, so low must be above 0": {"weight_decay": {"low": 0, "high": 0.1, "log": True}},
        "epochs must have low and high \\(int values\\)": {"epochs": {"low": 1.5, "high": 3}},
        "optimizer takes": {"optimizer": {"low": 1, "high": 2}},
        "'huge' is not one of": {"preset": {"choices": ["tiny", "huge"]}},
        "width must lie from 0.125 to 8.0": {"width": {"low": 0.1, "high": 2}},
        "label_smoothing": {"label_smoothing": {"low": 0, "high": 1.0}},  # TrainConfig's own rule: below 1
        "must be a JSON object": [],
    }
    for message, space in cases.items():
        with pytest.raises(S.SpecError, match=message):
            spaces.check_space(space)
    # a setting's own rule is a SweepError too, the one error the Sweep page catches (it had shown a traceback)
    with pytest.raises(spaces.SweepError, match=r"^The search space's label_smoothing must be a number in \[0, 1\)"):
        spaces.check_space({"label_smoothing": {"low": 0, "high": 10}})
    with pytest.raises(S.SpecError, match="the model tiny has no Dropout layer"):
        spaces.check_space({"dropout": {"low": 0, "high": 0.5}}, TINY.spec)
    with pytest.raises(S.SpecError, match="not valid JSON"):
        spaces.parse_space(b"{")


def test_default_space_suits_the_model():
    assert "dropout" not in spaces.default_space(TINY.spec)
    assert spaces.default_space(get_preset("report-2-1").spec)["dropout"] == {"low": 0.0, "high": 0.6}
    for preset in ("tiny", "report-2-1"):
        spaces.check_space(spaces.default_space(get_preset(preset).spec), get_preset(preset).spec)


def test_params_applied_to_spec_and_settings():
    base = dataclasses.replace(TINY.train, data="sample", limit=300)
    spec, config = spaces.apply_params(TINY.spec, base, {"width": 1.5, "learning_rate": 0.02, "epochs": 3})
    assert [layer.filters for layer in spec.layers if isinstance(layer, S.Conv2D)] == [24, 48]  # 16, 32 x 1.5
    assert config.learning_rate == 0.02 and config.epochs == 3 and config.data == "sample" and config.limit == 300
    spec, config = spaces.apply_params(TINY.spec, base, {"preset": "report-2-1", "dropout": 0.125})
    assert spec.name == "report-2-1" and config.batch_size == 32 and config.data == "sample"
    assert [layer.rate for layer in spec.layers if isinstance(layer, S.Dropout)] == [0.125]
    spec, config = spaces.apply_params(TINY.spec, dataclasses.replace(base, epochs=2), {"preset": "fast-small"})
    assert (config.epochs, config.optimizer, config.min_steps) == (2, "muon", 200)  # the preset's; the base's epochs
    _, config = spaces.apply_params(TINY.spec, base, {"preset": "fast-small", "batch_size": 250})
    assert (config.batch_size, config.min_steps) == (250, None)  # a batch tried is trained as given
    with pytest.raises(S.SpecError):
        spaces.apply_params(get_preset("report-2-2").spec, base, {"width": 8.0})  # far beyond the parameter limit


def test_a_sampled_number_keeps_three_significant_digits_within_its_range():
    import optuna

    assert spaces.significant(0.0023456789123, 3e-4, 1e-2) == 0.00235
    assert spaces.significant(0.12346, 0.12345, 0.2) == 0.12345  # rounded below low: low
    assert spaces.significant(0.99951, 0.5, 0.9995) == 0.9995  # rounded above high (1.0): high
    trial = optuna.trial.FixedTrial({"learning_rate": 0.0023456789123, "epochs": 3})
    space = {"learning_rate": {"low": 3e-4, "high": 1e-2, "log": True}, "epochs": {"low": 1, "high": 5, "log": False}}
    assert spaces.suggest(trial, space) == {"learning_rate": 0.00235, "epochs": 3}


def test_a_width_the_model_cannot_be_built_at_is_refused_before_any_trial():
    # width 4.5 of report-2-2 (filters 1,024 x 4.5 > 4,096) had failed every trial, and the sweep had ended 'finished'
    spec = get_preset("report-2-2").spec
    with pytest.raises(spaces.SweepError, match=r"At width 4.5 the model report-2-2 cannot be built: layer \d+ "
                                                r"\(Conv2D\): filters must be a whole number from 1 to 4096"):
        spaces.check_space({"width": {"low": 4.5, "high": 8}}, spec)
    with pytest.raises(spaces.SweepError, match="At width 5 the model"):
        spaces.check_space({"width": {"choices": [1, 5]}}, spec)
    assert spaces.check_space({"width": {"low": 0.5, "high": 1.5}}, spec)["width"]["high"] == 1.5
