"""cifar_core.spec: each layer field's checks and ranges, the spec header's, and the Build page's float bounds.

The checks are reached through shapes.validate, the way every caller reaches them."""

import re

import pytest

from cifar_core import shapes
from cifar_core import spec as S


def _error(spec) -> str:
    with pytest.raises(S.SpecError) as info:
        shapes.validate(spec)
    return str(info.value)


def test_conv_filters_zero():
    message = _error(S.ModelSpec("f", (S.Conv2D(0), S.Flatten())))
    assert message.startswith("layer 1 (Conv2D)")
    assert "filters" in message and "from 1 to 4096" in message and "got 0" in message


def test_dropout_rate_out_of_range():
    message = _error(S.ModelSpec("d", (S.Conv2D(8), S.Flatten(), S.Dropout(1.5))))
    assert message.startswith("layer 3 (Dropout)")
    assert "rate" in message and "[0, 1)" in message and "1.5" in message


def test_unknown_activation_lists_the_allowed_ones():
    message = _error(S.ModelSpec("a", (S.Flatten(), S.Dense(8, activation="swish"))))
    assert message.startswith("layer 2 (Dense)")
    assert "'swish'" in message
    for name in S.ACTIVATIONS:
        assert name in message


def test_a_bool_is_not_an_integer_field():
    assert "filters" in _error(S.ModelSpec("b", (S.Conv2D(True), S.Flatten())))
    assert "use_bias" in _error(S.ModelSpec("b", (S.Conv2D(8, use_bias=1), S.Flatten())))


@pytest.mark.parametrize("layer, word", [
    (S.Conv2D(8, kernel_initializer="zeros"), "kernel_initializer must be one of glorot_uniform, he_normal, dirac"),
    (S.BatchNormalization(epsilon=0), "epsilon must be a number in (0, 1)"),
    (S.BatchNormalization(scale="no"), "scale must be true or false"),
    (S.Activation("swish"), "activation must be one of"),
])
def test_new_fields_are_checked(layer, word):
    assert word in _error(S.ModelSpec("b", (layer, S.Flatten())))


@pytest.mark.parametrize("name", ["", "   ", "x" * 65, 5, None])
def test_the_name_is_1_to_64_characters_not_only_spaces(name):
    assert "name must be a text of 1 to 64 characters, not only spaces." in _error(S.ModelSpec(name, (S.Flatten(),)))


@pytest.mark.parametrize("scale", [0, -1.0, 11, True, "1/9"])
def test_logit_scale_range(scale):
    assert "logit_scale must be a number in (0, 10]" in _error(S.ModelSpec("b", (S.Flatten(),), logit_scale=scale))


def test_the_build_pages_float_bounds_are_the_specs_own():
    """One source for each float field's range: what validation allows is what the Build page's inputs allow."""
    for name, (low, high, written) in S.FLOAT_RANGES.items():
        assert S.float_bounds(name) == (low, high)
        layer = S.BatchNormalization if name in ("momentum", "epsilon") else S.Dropout
        shapes.validate(S.ModelSpec("x", (S.Conv2D(4), layer(**{name: high}), S.Flatten())))
        shapes.validate(S.ModelSpec("x", (S.Conv2D(4), layer(**{name: low}), S.Flatten())))
        for outside in (written.startswith("(") and 0.0 or -0.1, 1.0):
            with pytest.raises(S.SpecError, match=f"{name} must be a number in {re.escape(written)}"):
                shapes.validate(S.ModelSpec("x", (S.Conv2D(4), layer(**{name: outside}), S.Flatten())))


def test_the_stack_edits_give_a_new_spec_and_keep_the_rest():
    spec = S.ModelSpec("x", (S.Conv2D(8), S.MaxPooling2D(), S.Flatten()), logit_scale=0.5)
    assert S.insert_layer(spec, 1, S.Dropout()) == S.ModelSpec(
        "x", (S.Conv2D(8), S.Dropout(), S.MaxPooling2D(), S.Flatten()), logit_scale=0.5)
    assert S.insert_layer(spec, 3, S.Dense(4)).layers == (S.Conv2D(8), S.MaxPooling2D(), S.Flatten(), S.Dense(4))
    assert S.insert_layer(S.ModelSpec(), 0, S.Flatten()).layers == (S.Flatten(),)
    assert S.move_layer(spec, 0, 1).layers == (S.MaxPooling2D(), S.Conv2D(8), S.Flatten())
    assert S.move_layer(spec, 2, -1).layers == (S.Conv2D(8), S.Flatten(), S.MaxPooling2D())
    assert S.remove_layer(spec, 1) == S.ModelSpec("x", (S.Conv2D(8), S.Flatten()), logit_scale=0.5)
    for index, step in ((0, -1), (2, 1)):
        with pytest.raises(IndexError):
            S.move_layer(spec, index, step)
