"""cifar_core.builder: the Keras model of a spec, and the Keras source that builds the same model."""

import keras
import numpy as np
import pytest

from cifar_core import shapes
from cifar_core import spec as S
from cifar_core.builder import build_model, to_keras_source
from cifar_core.presets import PRESETS

EVERY_TYPE = S.ModelSpec("every type!", (
    S.Conv2D(8, 3, strides=2, padding="valid", activation="elu", use_bias=False),
    S.MaxPooling2D(3, strides=2, padding="same"), S.AveragePooling2D(2), S.BatchNormalization(momentum=0.9),
    S.LayerNormalization(), S.Dense(6, activation="gelu"), S.Dropout(0.3), S.Flatten(),
    S.Dense(12, activation="sigmoid", use_bias=False),
))


def _exec_source(spec):
    namespace = {}
    source = to_keras_source(spec).replace("model.summary()", "")
    exec(compile(source, "<keras source>", "exec"), namespace)
    return namespace["model"]


@pytest.mark.parametrize("spec", [p.spec for p in PRESETS.values()] + [EVERY_TYPE], ids=lambda s: s.name)
def test_source_builds_the_same_model(spec):
    from_source, built = _exec_source(spec), build_model(spec)
    assert from_source.count_params() == built.count_params() == shapes.summary(spec)["params"]
    assert [type(layer).__name__ for layer in from_source.layers] == [type(layer).__name__ for layer in built.layers]
    assert [tuple(layer.output.shape) for layer in from_source.layers] == \
        [tuple(layer.output.shape) for layer in built.layers]
    # the same layer settings: every keyword the spec carries reaches Keras in both models
    for a, b in zip(from_source.layers[1:-1], built.layers[1:-1]):
        config_a, config_b = a.get_config(), b.get_config()
        for key in ("filters", "kernel_size", "strides", "padding", "activation", "use_bias", "pool_size", "rate",
                    "units", "momentum"):
            assert config_a.get(key) == config_b.get(key), (type(a).__name__, key)


def test_source_is_readable_and_runnable_as_printed():
    source = to_keras_source(PRESETS["tiny"].spec)
    assert source.startswith("import keras\nfrom keras import layers\n")
    assert "layers.Conv2D(16, 3, padding='same', activation='relu')," in source
    assert "layers.Dense(10, activation='softmax')," in source
    assert source.rstrip().endswith("model.summary()")
    compile(source, "<keras source>", "exec")


def test_source_refuses_an_invalid_spec():
    with pytest.raises(S.SpecError):
        to_keras_source(S.ModelSpec("bad", (S.Conv2D(0), S.Flatten())))


def test_build_refuses_an_invalid_spec():
    with pytest.raises(S.SpecError):
        build_model(S.ModelSpec("bad", (S.Conv2D(8),)))


def test_model_input_and_rescaling():
    model = build_model(PRESETS["tiny"].spec)
    assert model.input_shape == (None, 32, 32, 3)
    assert type(model.layers[0]).__name__ == "Rescaling"
    assert model.layers[0].scale == pytest.approx(1 / 255)
    assert model.name == "tiny"
    assert build_model(EVERY_TYPE).name == "every_type_"


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_output_layer_is_float32_softmax(policy):
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_model(PRESETS["tiny"].spec)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    out = model.layers[-1]
    assert type(out).__name__ == "Dense" and out.name == "predictions"
    assert out.activation is keras.activations.softmax
    assert out.dtype_policy.compute_dtype == "float32" and out.dtype_policy.variable_dtype == "float32"
    if policy != "float32":  # the hidden layers do follow the policy
        assert model.layers[1].dtype_policy.compute_dtype == policy.split("_")[1]
    probabilities = np.asarray(model(np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("float32")))
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (probabilities >= 0).all()


def test_source_of_an_airbench_spec_imports_its_custom_pieces():
    source = to_keras_source(PRESETS["fast"].spec)
    assert "from cifar_core.layers import PatchWhitening, Dirac\n" in source
    assert "    PatchWhitening(2),\n    layers.Activation('gelu'),\n" in source
    assert "kernel_initializer=Dirac()" in source
    assert "layers.Rescaling(0.1111111111111111)," in source and "layers.Activation('softmax')," in source


def test_batch_normalization_and_activation_use_the_project_layers():
    from cifar_core import layers as custom

    model = build_model(S.ModelSpec("m", (S.Conv2D(4, 3), S.BatchNormalization(), S.Activation("gelu"), S.Flatten()),
                                    input_shape=(8, 8, 3)))
    assert [type(layer) for layer in model.layers[2:4]] == [custom.BatchNormalization, custom.Activation]
    assert model.layers[3].get_config()["activation"] == "gelu"


def test_logit_scale_divides_the_logits_before_softmax():
    spec = S.ModelSpec("scaled", (S.Flatten(),), input_shape=(8, 8, 1), num_classes=3, logit_scale=1 / 9)
    model = build_model(spec)
    assert [layer.name for layer in model.layers[-3:]] == ["logits", "logit_scale", "predictions"]
    assert all(layer.dtype_policy.compute_dtype == "float32" for layer in model.layers[-3:])
    x = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)).astype("float32")
    dense = model.get_layer("logits")
    logits = (x.reshape(4, -1) / 255) @ np.asarray(dense.kernel) + np.asarray(dense.bias)
    expected = np.exp(logits / 9) / np.exp(logits / 9).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=1e-5)


def test_patch_whitening_is_adapted_from_the_training_images():
    spec = S.ModelSpec("w", (S.PatchWhitening(2), S.Flatten()), input_shape=(8, 8, 3))
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (64, 8, 8, 3)).astype("uint8")
    untouched, adapted = build_model(spec), build_model(spec, x_train)
    assert not np.any(np.asarray(untouched.layers[1].kernel))
    out = np.asarray(adapted.layers[1](x_train.astype("float32") / 255)).reshape(-1, 24)
    np.testing.assert_allclose(np.cov(out[:, :12], rowvar=False), np.eye(12), atol=0.05)  # eps 5e-4 damps a bit


def test_a_model_built_for_any_size_takes_smaller_images_with_the_same_weights():
    spec = PRESETS["fast-small"].spec  # its whitening, and a global last max-pool
    fixed, flexible = build_model(spec), build_model(spec, any_size=True)
    assert fixed.input_shape == (None, 32, 32, 3) and flexible.input_shape == (None, None, None, 3)
    assert [w.shape for w in fixed.weights] == [w.shape for w in flexible.weights]
    flexible.set_weights(fixed.get_weights())
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(flexible.predict_on_batch(x), fixed.predict_on_batch(x), atol=1e-6)
    assert flexible.predict_on_batch(x[:, :16, :16]).shape == (2, 10)


@pytest.mark.parametrize("name, keras_name", [("café net", "caf__net"), ("_mine", "mine"), ("模型", "model"),
                                              ("..", "model"), ("  x", "x"), ("my-net.v2", "my-net.v2")])
def test_any_spec_name_makes_a_model_tensorflow_trains(name, keras_name):
    # names TensorFlow refuses as a root name scope had passed the Build page and failed every training
    import dataclasses

    spec = dataclasses.replace(PRESETS["tiny"].spec, name=name)
    model = build_model(spec)
    assert model.name == keras_name and f"name={keras_name!r}" in to_keras_source(spec)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(np.zeros((2, 32, 32, 3), "float32"), np.zeros(2, "int64"), epochs=1, verbose=0)
