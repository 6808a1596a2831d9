"""cifar_core.spec_io: the error messages of malformed spec JSON, and the JSON round trip."""

import json

import pytest
from helpers import ALL_TYPES, built

from cifar_core import shapes, spec_io
from cifar_core import spec as S
from cifar_core.presets import PRESETS

# ---------------------------------------------------------------------------------------------------------------
# Malformed JSON


def _error(text) -> str:
    with pytest.raises(S.SpecError) as info:
        spec_io.from_json(text)
    return str(info.value)


def test_unknown_layer_type_in_json():
    text = json.dumps({"name": "x", "layers": [{"type": "Flatten"}, {"type": "Conv3D", "filters": 4}]})
    message = _error(text)
    assert message.startswith("layer 2")
    assert "'Conv3D'" in message
    for name in S.LAYER_TYPES:
        assert name in message


def test_unknown_key_in_a_layer():
    text = json.dumps({"layers": [{"type": "Conv2D", "filters": 4, "kernel": 3}, {"type": "Flatten"}]})
    message = _error(text)
    assert message.startswith("layer 1 (Conv2D)")
    assert "kernel" in message
    for key in ("filters", "kernel_size", "strides", "padding", "activation", "use_bias"):
        assert key in message


def test_bad_field_value_in_json_names_position():
    text = json.dumps({"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 0}]})
    message = _error(text)
    assert message.startswith("layer 2 (Dense)") and "units" in message and "from 1 to 100000" in message


def test_conv_strides_null_is_a_spec_error():
    # strides=None is "pool_size" for pooling layers; a Conv2D with null strides used to raise TypeError
    message = _error(json.dumps({"layers": [{"type": "Conv2D", "strides": None}, {"type": "Flatten"}]}))
    assert message.startswith("layer 1 (Conv2D)") and "strides" in message
    assert spec_io.from_json(json.dumps({"layers": [{"type": "MaxPooling2D", "strides": None}, {"type": "Flatten"}]}))


@pytest.mark.parametrize("shape", [[32, 32], ["32", 32, 3], 5, [32, 32, 2], [4, 32, 3], [32.0, 32, 3]])
def test_bad_input_shape_is_a_spec_error(shape):
    assert "input_shape" in _error(json.dumps({"layers": [{"type": "Flatten"}], "input_shape": shape}))


@pytest.mark.parametrize("text, word", [
    ("not json", "JSON"),
    ("[]", "object"),
    ('{"layers": [], "colour": 1}', "colour"),
    ('{"layers": {}}', "layers"),
    ('{"layers": [3]}', "layer 1"),
    ('{"layers": [{"type": "Flatten"}], "num_classes": 1}', "num_classes"),
    ('{"layers": [{"type": "Flatten"}], "name": ""}', "name"),
])
def test_malformed_json(text, word):
    assert word in _error(text)


# ---------------------------------------------------------------------------------------------------------------
# JSON


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip(name):
    from cifar_core.builder import build_model

    spec = PRESETS[name].spec
    again = spec_io.from_json(spec_io.to_json(spec))
    assert again == spec
    assert spec_io.to_json(again) == spec_io.to_json(spec)
    assert build_model(again).count_params() == built(spec).count_params() == shapes.summary(spec)["params"]


@pytest.mark.parametrize("spec", ALL_TYPES, ids=lambda s: s.name)
def test_json_round_trip_every_layer_type(spec):
    again = spec_io.from_json(spec_io.to_json(spec))
    assert again == spec
    assert again.input_shape == spec.input_shape and isinstance(again.input_shape, tuple)


def test_json_defaults():
    spec = spec_io.from_json('{"layers": [{"type": "Conv2D"}, {"type": "Flatten"}]}')
    assert spec.layers[0] == S.Conv2D(32, 3, 1, "same", "relu", True)
    assert spec.input_shape == (32, 32, 3) and spec.num_classes == 10 and spec.name == "custom"


def test_json_is_keras_like():
    data = json.loads(spec_io.to_json(PRESETS["tiny"].spec))
    assert data["layers"][0] == {"type": "Conv2D", "filters": 16, "kernel_size": 3, "strides": 1, "padding": "same",
                                 "activation": "relu", "use_bias": True, "kernel_initializer": "glorot_uniform"}
    assert data["layers"][1] == {"type": "MaxPooling2D", "pool_size": 2, "strides": None, "padding": "valid"}


def test_the_compact_tables_rows_and_its_edits():
    spec = PRESETS["tiny"].spec  # Conv2D(16), MaxPooling2D, Conv2D(32), MaxPooling2D, GlobalMaxPooling2D
    rows = spec_io.table_rows(spec)
    assert rows == [{"type": "Conv2D", "settings": "filters=16"}, {"type": "MaxPooling2D", "settings": ""},
                    {"type": "Conv2D", "settings": ""}, {"type": "MaxPooling2D", "settings": ""},
                    {"type": "GlobalMaxPooling2D", "settings": ""}]
    assert spec_io.layers_from_table(rows, {}) == spec.layers
    assert spec_io.layers_from_table(rows, {"deleted_rows": [1, 3]}) == (S.Conv2D(16), S.Conv2D(32),
                                                                         S.GlobalMaxPooling2D())
    edited = spec_io.layers_from_table(rows, {"edited_rows": {"2": {"settings": "filters=8, padding=valid"}}})
    assert edited[2] == S.Conv2D(8, padding="valid") and edited[:2] + edited[3:] == spec.layers[:2] + spec.layers[3:]
    added = spec_io.layers_from_table(rows, {"added_rows": [{}, {"type": "Dropout", "settings": "rate=0.5"}]})
    assert added == (*spec.layers, S.Conv2D(), S.Dropout(0.5))
    with pytest.raises(S.SpecError, match="Layer 1 .Conv2D.: write its settings as name=value"):
        spec_io.layers_from_table(rows, {"edited_rows": {"0": {"settings": "filters 8"}}})
    # An edit and a deletion in one batch both name rows as they were shown: row 2 is edited, row 1 goes.
    both = spec_io.layers_from_table(rows, {"deleted_rows": [1], "edited_rows": {"2": {"settings": "filters=8"}}})
    assert both == (spec.layers[0], S.Conv2D(8), *spec.layers[3:])
    assert spec_io.layers_from_table(rows, {"edited_rows": {"9": {"settings": "filters=8"}}}) == spec.layers
    for nines in ("9" * 400, "-" + "9" * 400):  # past a float's range: named, not an OverflowError
        with pytest.raises(S.SpecError, match=r"layer 1 \(Dropout\): rate must be a number in \[0, 1\), got -?inf"):
            spec_io.layers_from_table([{"type": "Dropout", "settings": "rate=0.5"}],
                                      {"edited_rows": {"0": {"settings": f"rate={nines}"}}})
    assert rows == spec_io.table_rows(spec)  # the rows given are not changed


def test_a_layer_without_a_type_says_so():
    with pytest.raises(S.SpecError, match="layer 1 has no 'type'; give one of Conv2D, "):
        spec_io.layer_from_dict({"kind": "Conv2D", "filters": 8}, 1)
