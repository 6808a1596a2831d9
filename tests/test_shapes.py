"""cifar_core.shapes: hand-computed parameters and MACs, exact preset totals, shape inference against Keras, and the
error messages of specs whose layers do not fit together."""

import math

import pytest
from helpers import ALL_TYPES, built

from cifar_core import shapes
from cifar_core import spec as S
from cifar_core.presets import PRESETS

# ---------------------------------------------------------------------------------------------------------------
# Hand-computed small specs

SMALL = S.ModelSpec("small", (
    S.Conv2D(8, 3, padding="valid"),                        # 32x32x3 -> 30x30x8
    S.MaxPooling2D(2),                                      # -> 15x15x8
    S.Conv2D(4, 5, strides=2, padding="same", use_bias=False),  # ceil(15/2) = 8 -> 8x8x4
    S.BatchNormalization(),                                 # 8x8x4
    S.Flatten(),                                            # 256
    S.Dense(16),                                            # 16
))


def test_small_spec_by_hand():
    rows = shapes.infer(SMALL)
    assert [r.output_shape for r in rows] == [(30, 30, 8), (15, 15, 8), (8, 8, 4), (8, 8, 4), (256,), (16,), (10,)]
    assert [r.index for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert rows[-1].type == "Dense (output)"
    # Conv2D(8, 3x3) on 3 channels: 3*3*3*8 weights + 8 biases = 216 + 8 = 224
    # MaxPooling2D: 0
    # Conv2D(4, 5x5, no bias) on 8 channels: 5*5*8*4 = 800
    # BatchNormalization on 4 channels: gamma, beta, moving mean, moving variance = 4*4 = 16, of which 2*4 = 8 frozen
    # Flatten: 0;  Dense(16) on 256: 256*16 + 16 = 4,112;  output Dense(10) on 16: 16*10 + 10 = 170
    assert [r.params for r in rows] == [224, 0, 800, 16, 0, 4112, 170]
    assert [r.non_trainable_params for r in rows] == [0, 0, 0, 8, 0, 0, 0]
    # MACs: conv1 30*30 positions * (3*3*3) * 8 = 900 * 216 = 194,400
    #       conv2 8*8 positions * (5*5*8) * 4 = 64 * 800 = 51,200
    #       dense 256*16 = 4,096; output 16*10 = 160
    assert [r.macs for r in rows] == [194_400, 0, 51_200, 0, 0, 4_096, 160]
    # totals: 224 + 800 + 16 + 4,112 + 170 = 5,322 params; 194,400 + 51,200 + 4,096 + 160 = 249,856 MACs
    assert shapes.summary(SMALL) == {"params": 5_322, "non_trainable_params": 8, "macs": 249_856}


def test_small_spec_on_grey_input_with_dense_on_3d():
    spec = S.ModelSpec("grey", (
        S.Conv2D(6, 3, activation="tanh"),                  # 16x16x1 -> 16x16x6 (same)
        S.AveragePooling2D(3, strides=2),                   # (16 - 3) // 2 + 1 = 7 -> 7x7x6
        S.LayerNormalization(),                             # 7x7x6
        S.Dense(5),                                         # on the last axis: 7x7x5
        S.GlobalAveragePooling2D(),                         # 5
    ), input_shape=(16, 16, 1), num_classes=3)
    rows = shapes.infer(spec)
    assert [r.output_shape for r in rows] == [(16, 16, 6), (7, 7, 6), (7, 7, 6), (7, 7, 5), (5,), (3,)]
    # conv: 3*3*1*6 + 6 = 60;  LayerNormalization: gamma + beta = 2*6 = 12;  Dense(5) on 6 channels: 6*5 + 5 = 35
    # output: 5*3 + 3 = 18;  total 60 + 12 + 35 + 18 = 125
    assert [r.params for r in rows] == [60, 0, 12, 35, 0, 18]
    # MACs: conv 16*16 * 9 * 6 = 13,824; dense on 7*7 positions * 6 * 5 = 1,470; output 5*3 = 15
    assert [r.macs for r in rows] == [13_824, 0, 0, 1_470, 0, 15]
    assert shapes.summary(spec) == {"params": 125, "non_trainable_params": 0, "macs": 15_309}


def test_valid_padding_and_strides_rounding():
    # valid: floor((32 - 5) / 3) + 1 = 10; same: ceil(32 / 3) = 11
    rows = shapes.infer(S.ModelSpec("r", (S.Conv2D(2, 5, strides=3, padding="valid"), S.MaxPooling2D(3, padding="same"),
                                     S.Flatten())))
    assert rows[0].output_shape == (10, 10, 2)
    assert rows[1].output_shape == (4, 4, 2)  # ceil(10 / 3) = 4


# ---------------------------------------------------------------------------------------------------------------
# Presets

EXPECTED_TOTALS = {
    # report-2-2: the student report's own summary: "Total params: 15,579,550 ... Non-trainable params: 6,400"
    "report-2-2": (15_579_550, 6_400),
    # report-2-1: convs 896 + 9,248 + 18,496 + 36,928 + 36,928; Dense(64) on 3*3*64=576: 36,928; output 650
    "report-2-1": (140_074, 0),
    # fast (airbench94: 2x2 whitening to 24 channels, then blocks of widths 64, 256, 256, 3x3 convs without bias):
    #   whitening 2*2*3*24 + 24 = 312, all frozen
    #   convs 3*3*24*64 + 3*3*64*64 + 3*3*64*256 + 3*3*256*256 * 3
    #       = 13,824 + 36,864 + 147,456 + 589,824 * 3 = 1,967,616
    #   BN without gamma 3*(64 + 64 + 256 * 4) = 3,456, of it frozen 2*1,152 = 2,304
    #   output 256*10 + 10 = 2,570;  total 312 + 1,967,616 + 3,456 + 2,570 = 1,973,954; frozen 312 + 2,304 = 2,616
    "fast": (1_973_954, 2_616),
    # fast-small (widths 32, 64, 128): whitening 312; convs 3*3*(24*32 + 32*32 + 32*64 + 64*64 + 64*128 + 128*128)
    #   = 9 * 32,512 = 292,608; BN 3*(32 + 32 + 64 + 64 + 128 + 128) = 1,344, frozen 896; output 128*10 + 10 = 1,290
    #   total 312 + 292,608 + 1,344 + 1,290 = 295,554; frozen 312 + 896 = 1,208
    "fast-small": (295_554, 1_208),
    # tiny: 3*3*3*16 + 16 = 448; 3*3*16*32 + 32 = 4,640; output 32*10 + 10 = 330
    "tiny": (5_418, 0),
}


def test_there_are_five_presets():
    assert set(PRESETS) == set(EXPECTED_TOTALS)


@pytest.mark.parametrize("name", sorted(EXPECTED_TOTALS))
def test_preset_totals(name):
    summary = shapes.summary(PRESETS[name].spec)
    assert (summary["params"], summary["non_trainable_params"]) == EXPECTED_TOTALS[name]


def test_report_2_2_layer_table_matches_the_report():
    # Param # column of the report's model.summary(), top to bottom
    report = [3584, 512, 295168, 1024, 0, 1024, 2097664, 2048, 13108224, 4096, 0, 4096, 0, 61500, 0, 610]
    rows = shapes.infer(PRESETS["report-2-2"].spec)
    assert [r.params for r in rows] == report
    assert [r.output_shape for r in rows][4] == (11, 11, 256) and rows[10].output_shape == (1, 1, 1024)


def test_tiny_macs_by_hand():
    # conv1: 32*32 * 3*3*3 * 16 = 442,368; conv2: 16*16 * 3*3*16 * 32 = 1,179,648; output: 32*10 = 320
    assert shapes.summary(PRESETS["tiny"].spec)["macs"] == 442_368 + 1_179_648 + 320


# ---------------------------------------------------------------------------------------------------------------
# Shape inference against Keras


def test_all_types_specs_cover_every_layer_type():
    assert {type(layer).__name__ for s in ALL_TYPES for layer in s.layers} == set(S.LAYER_TYPES)


def _keras_macs(layer) -> int:
    """MACs from Keras's own shapes, independently of shapes.py: conv = output positions * kernel area * in * out."""
    import keras

    if isinstance(layer, keras.layers.Conv2D) or type(layer).__name__ == "PatchWhitening":
        kh, kw, channels, filters = layer.kernel.shape
        return math.prod(layer.output.shape[1:3]) * kh * kw * channels * filters
    if isinstance(layer, keras.layers.Dense):
        shape = layer.input.shape
        return math.prod(shape[1:-1]) * shape[-1] * layer.units
    return 0


@pytest.mark.parametrize("spec", [p.spec for p in PRESETS.values()] + ALL_TYPES, ids=lambda s: s.name)
def test_inference_equals_keras(spec):
    model = built(spec)
    rows = shapes.infer(spec)
    layers = model.layers
    assert type(layers[0]).__name__ == "Rescaling"
    layers = layers[1:]
    if spec.logit_scale != 1:  # the output Dense is followed by the logit scale and the softmax
        assert [type(layer).__name__ for layer in layers[-2:]] == ["Rescaling", "Activation"]
        assert layers[-2].scale == pytest.approx(spec.logit_scale)
        layers = layers[:-2]
    assert len(layers) == len(rows)
    for row, layer in zip(rows, layers):
        expected = "Dense" if row.type == "Dense (output)" else row.type
        assert type(layer).__name__ == expected
        assert tuple(layer.output.shape[1:]) == row.output_shape, row
        assert layer.count_params() == row.params, row
        assert sum(math.prod(w.shape) for w in layer.non_trainable_weights) == row.non_trainable_params, row
        assert _keras_macs(layer) == row.macs, row
    assert model.output_shape == (None, spec.num_classes)
    summary = shapes.summary(spec)
    assert model.count_params() == summary["params"]
    assert sum(math.prod(w.shape) for w in model.non_trainable_weights) == summary["non_trainable_params"]


# ---------------------------------------------------------------------------------------------------------------
# Invalid specs


def _error(spec) -> str:
    with pytest.raises(S.SpecError) as info:
        shapes.validate(spec)
    return str(info.value)


def test_pooling_collapse_names_the_layer():
    # 32 -> 16 -> 8 -> 4 -> 2 -> 1 -> the sixth 2x2 pool does not fit a 1x1 input
    spec = S.ModelSpec("collapse", (S.Conv2D(8),) + (S.MaxPooling2D(2),) * 6 + (S.Flatten(),))
    message = _error(spec)
    assert message.startswith("layer 7 (MaxPooling2D)")
    assert "1 × 1" in message and "pool_size 2" in message and "padding 'same'" in message
    assert shapes.first_error(spec) == (7, message)
    # without the first Conv2D the sixth pooling layer is at position 6
    message = _error(S.ModelSpec("collapse", (S.MaxPooling2D(2),) * 6 + (S.Flatten(),)))
    assert message.startswith("layer 6 (MaxPooling2D)")
    # five fit
    assert shapes.infer(S.ModelSpec("ok", (S.MaxPooling2D(2),) * 5 + (S.Flatten(),)))[4].output_shape == (1, 1, 3)


def test_over_the_parameter_limit():
    # 32x32x3 -> Conv2D(64): 3*3*3*64 + 64 = 1,792 -> Flatten: 32*32*64 = 65,536
    # -> Dense(100000): 65,536 * 100,000 + 100,000 = 6,553,700,000 -> output: 100,000*10 + 10 = 1,000,010
    spec = S.ModelSpec("big", (S.Conv2D(64), S.Flatten(), S.Dense(100_000)))
    message = _error(spec)
    assert "6,554,701,802" in message and "50,000,000" in message
    assert "layer 3 (Dense)" in message and "6,553,700,000" in message


def test_ending_in_a_3d_output():
    spec = S.ModelSpec("3d", (S.Conv2D(8), S.MaxPooling2D(2)))
    message = _error(spec)
    assert message.startswith("layer 2 (MaxPooling2D)")
    assert "(16, 16, 8)" in message
    for name in ("Flatten", "GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        assert name in message
    assert shapes.first_error(spec)[0] == 2
    assert "Flatten" in _error(S.ModelSpec("empty", ()))


def test_conv_after_flatten_is_refused():
    message = _error(S.ModelSpec("x", (S.Flatten(), S.Conv2D(8))))
    assert message.startswith("layer 2 (Conv2D)") and "3-D" in message


def test_first_error_none_for_valid():
    assert shapes.first_error(SMALL) is None
    assert shapes.layer_errors(SMALL) == {}


def test_layer_errors_names_every_wrong_layer_not_only_the_first():
    spec = S.ModelSpec("x", (S.Conv2D(0), S.Conv2D(8, 40), S.Dropout(1.5), S.Flatten()))
    assert shapes.layer_errors(spec) == {
        1: "layer 1 (Conv2D): filters must be a whole number from 1 to 4096, got 0.",
        2: "layer 2 (Conv2D): kernel_size must be a whole number from 1 to 11, got 40.",
        3: "layer 3 (Dropout): rate must be a number in [0, 1), got 1.5."}
    assert shapes.first_error(spec)[0] == 1
    # a kernel larger than the image left to it is a shape's problem, which follows from the layers before it:
    # first_error's alone, never a field's
    deep = S.ModelSpec("y", (S.Conv2D(8, 11, padding="valid"),) * 4 + (S.Flatten(),))  # 32 -> 22 -> 12 -> 2 -> ?
    assert shapes.layer_errors(deep) == {} and shapes.first_error(deep)[0] == 4


def test_inference_is_pure_python():
    # the Build page calls infer() on every keystroke, without TensorFlow
    import subprocess
    import sys

    code = ("import sys; from cifar_core import shapes, presets; "
            "[shapes.summary(p.spec) for p in presets.PRESETS.values()]; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=__import__("pathlib").Path(__file__).resolve().parent.parent)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_patch_whitening_by_hand():
    # 2x2 patches of 3 channels: 12 directions and their negatives = 24 outputs at 31x31; 2*2*3*24 + 24 = 312 frozen
    # parameters; MACs 31*31 * 2*2*3 * 24 = 276,768
    rows = shapes.infer(S.ModelSpec("w", (S.PatchWhitening(2), S.Flatten())))
    assert (rows[0].output_shape, rows[0].params, rows[0].non_trainable_params, rows[0].macs) == \
        ((31, 31, 24), 312, 312, 276_768)


def test_patch_whitening_must_come_first():
    message = _error(S.ModelSpec("w", (S.Conv2D(8), S.PatchWhitening(2), S.Flatten())))
    assert "layer 2 (PatchWhitening) must be the first layer" in message


def test_the_build_pages_shape_table():
    spec = PRESETS["tiny"].spec  # 3x3 convolutions: (27 + 1) x 16 and (144 + 1) x 32 parameters, Dense(10) 330
    assert shapes.table(shapes.infer(spec), shapes.summary(spec)) == [
        {"layer": "1. Conv2D", "output shape": "32 × 32 × 16", "params": 448, "MACs": 32 * 32 * 16 * 27},
        {"layer": "2. MaxPooling2D", "output shape": "16 × 16 × 16", "params": 0, "MACs": 0},
        {"layer": "3. Conv2D", "output shape": "16 × 16 × 32", "params": 4640, "MACs": 16 * 16 * 32 * 144},
        {"layer": "4. MaxPooling2D", "output shape": "8 × 8 × 32", "params": 0, "MACs": 0},
        {"layer": "5. GlobalMaxPooling2D", "output shape": "32", "params": 0, "MACs": 0},
        {"layer": "6. Dense (output)", "output shape": "10", "params": 330, "MACs": 320},
        {"layer": "Total", "output shape": "", "params": 5418, "MACs": 1_622_336},
    ]
    # An invalid spec: the rows stop at the impossible layer, and there is no total.
    bad = S.ModelSpec("bad", (S.MaxPooling2D(),) * 6 + (S.Flatten(),))
    table = shapes.table(shapes.infer_prefix(bad))
    assert [r["output shape"] for r in table] == ["16 × 16 × 3", "8 × 8 × 3", "4 × 4 × 3", "2 × 2 × 3", "1 × 1 × 3",
                                                  "✗ invalid"]
    assert table[-1] == {"layer": "6. MaxPooling2D", "output shape": "✗ invalid", "params": 0, "MACs": 0}


def test_at_size_feeds_the_same_weights_smaller_images():
    tiny = PRESETS["tiny"].spec  # conv 3x3 same, pool 2, conv, pool 2, global max pooling
    small = shapes.at_size(tiny, 16)
    assert small.input_shape == (16, 16, 3) and small.layers == tiny.layers
    assert [r.output_shape for r in shapes.infer(small)][:4] == [(16, 16, 16), (8, 8, 16), (8, 8, 32), (4, 4, 32)]
    assert shapes.summary(small)["params"] == shapes.summary(tiny)["params"]
    assert shapes.summary(small)["macs"] == (shapes.summary(tiny)["macs"] - 320) // 4 + 320  # the head does not shrink


@pytest.mark.parametrize("spec, size, words", [
    (PRESETS["tiny"].spec, 32, "must be below the images' 32 pixels, got 32"),
    (PRESETS["report-2-1"].spec, 24, "a Flatten makes its Dense layers depend on it"),
    (PRESETS["fast"].spec, 8, "low_res_size 8 does not fit this network: layer"),
    (PRESETS["fast-small"].spec, 8, "low_res_size 8 does not fit this network: layer"),
])
def test_at_size_refuses_what_cannot_train_on_smaller_images(spec, size, words):
    with pytest.raises(S.SpecError) as info:
        shapes.at_size(spec, size)
    assert words in str(info.value) and "The training setting low_res_" in str(info.value)


def test_a_training_batch_must_fit_in_memory():
    # tiny, an image: input 32*32*3 + conv 32*32*16 + pool 16*16*16 + conv 16*16*32 + pool 8*8*32 + 32 + 10 values
    tiny, fast = PRESETS["tiny"].spec, PRESETS["fast"].spec
    assert 3072 + 16384 + 4096 + 8192 + 2048 + 32 + 10 == 33834
    shapes.check_batch(tiny, 2975, memory=2**30)  # 2975 x 33834 x 8 bytes fit in 0.75 GiB, 2976 do not
    with pytest.raises(S.SpecError, match="batch_size 2,976 .* at most 2,975"):
        shapes.check_batch(tiny, 2976, memory=2**30)
    with pytest.raises(S.SpecError, match=r"batch_size 1,000 asks for about 2.7 GB .* \(356,602 values an image\)"
                                          r".* at most 282, or a smaller model"):
        shapes.check_batch(fast, 1000, memory=2**30)  # 0.75 GiB // (356,602 x 8)
    shapes.check_batch(fast, 1000, memory=4 * 2**30)
    assert shapes.memory_bytes() > 2**30
