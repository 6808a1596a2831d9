"""cifar_core.predict and models: classify / top_k with and without test-time augmentation, safe model loading, and
the serving copy. What an uploaded file becomes is tests/test_images.py's."""

import os
import re
import subprocess
from pathlib import Path

import helpers
import numpy as np
import pytest

from cifar_core import images, models, predict
from cifar_core.images import to_input_array

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------------------------
# classify and top_k

NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(scope="module")
def untrained_tiny():
    from cifar_core.builder import build_model
    from cifar_core.presets import get_preset

    return build_model(get_preset("tiny").spec)


def test_classify_good_and_bad(untrained_tiny):
    good = helpers.image_bytes(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    results = predict.classify(untrained_tiny, NAMES, [("bad.png", b"not an image"), ("good.png", good),
                                                       ("big.png", b"\0" * (images.MAX_BYTES + 1))], k=3)
    assert [r["file"] for r in results] == ["bad.png", "good.png", "big.png"]
    assert set(results[0]) == {"file", "error"} and set(results[2]) == {"file", "error"}
    for r in (results[0], results[2]):
        assert r["error"].endswith(".") and "\n" not in r["error"]
    assert "MB" in results[2]["error"]
    top = results[1]["top"]
    assert len(top) == 3 and "error" not in results[1]
    probabilities = [t["probability"] for t in top]
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0 < sum(probabilities) <= 1 + 1e-6
    assert all(isinstance(p, float) for p in probabilities)
    assert len({t["label"] for t in top}) == 3 and {t["label"] for t in top} <= set(NAMES)
    # the reported probabilities are the model's
    full = predict.predict_proba(untrained_tiny, to_input_array(good))[0]
    assert top[0]["label"] == NAMES[int(full.argmax())]
    assert top[0]["probability"] == pytest.approx(float(full.max()), abs=1e-6)
    assert "note" not in results[1]
    tiny = predict.classify(untrained_tiny, NAMES, [("dot.png", helpers.image_bytes(np.zeros((1, 1, 3), np.uint8)))])
    assert tiny[0]["note"].startswith("This image is 1 × 1 pixels") and len(tiny[0]["top"]) == 3


def test_tta_averages_the_image_and_its_mirror(untrained_tiny):
    x = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    mirrored = x[:, :, ::-1]
    plain, flipped = predict.predict_proba(untrained_tiny, x), predict.predict_proba(untrained_tiny, mirrored)
    assert np.abs(plain - flipped).max() > 1e-4  # the model itself is not mirror-symmetric
    averaged = predict.predict_proba(untrained_tiny, x, tta="mirror")
    np.testing.assert_allclose(averaged, (plain + flipped) / 2, atol=1e-6)
    np.testing.assert_allclose(predict.predict_proba(untrained_tiny, mirrored, tta="mirror"), averaged, atol=1e-6)
    one = predict.classify(untrained_tiny, NAMES, [("a.png", helpers.image_bytes(x[0]))], k=1, tta="mirror")[0]["top"]
    assert one[0]["probability"] == pytest.approx(float(averaged[0].max()), abs=1e-5)


def test_a_model_with_wide_layers_predicts_in_smaller_calls(untrained_tiny, monkeypatch):
    # tiny's widest output is its first convolution's, 32 x 32 x 16 values an image
    served = models.serving_model(untrained_tiny)
    assert max(models.output_sizes(served)) == 32 * 32 * 16
    calls, predict_on_batch = [], served.predict_on_batch
    monkeypatch.setattr(served, "predict_on_batch", lambda x: calls.append(len(x)) or predict_on_batch(x))
    x = np.random.default_rng(2).integers(0, 256, (25, 32, 32, 3)).astype(np.uint8)
    whole = predict.predict_proba(untrained_tiny, x, tta="mirror")
    assert calls == [50]
    calls.clear()
    monkeypatch.setattr(predict, "MAX_CALL_BYTES", 8 * 32 * 32 * 16 * 10)  # room for 10 images, views included
    np.testing.assert_allclose(predict.predict_proba(untrained_tiny, x, tta="mirror"), whole, atol=1e-6)
    assert calls == [10, 10, 10, 10, 10]


def test_mirror_shift_tta_weighs_the_shifted_pairs_as_one_half(untrained_tiny):
    x = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    up_left, down_right = padded[:, :32, :32], padded[:, 2:, 2:]
    assert np.array_equal(up_left[:, 1:, 1:], x[:, :31, :31]) and np.array_equal(down_right[:, :31, :31], x[:, 1:, 1:])

    def pair(images):
        mirrored = images[:, :, ::-1]
        return (predict.predict_proba(untrained_tiny, images) + predict.predict_proba(untrained_tiny, mirrored)) / 2

    expected = pair(x) / 2 + (pair(up_left) + pair(down_right)) / 4
    got = predict.predict_proba(untrained_tiny, x, tta="mirror-shift")
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert np.abs(got - pair(x)).max() > 1e-5  # the shifts change the answer
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_classify_all_bad_does_not_call_the_model():
    results = predict.classify(None, NAMES, [("x", b"nope"), ("y", b"")])  # a model of None would raise if called
    assert [sorted(r) for r in results] == [["error", "file"], ["error", "file"]]


def test_top_k():
    p = np.array([0.1, 0.6, 0.3])
    assert predict.top_k(p, ("a", "b", "c"), 2) == [{"label": "b", "probability": pytest.approx(0.6)},
                                                    {"label": "c", "probability": pytest.approx(0.3)}]
    assert [t["label"] for t in predict.top_k(p, ("a", "b", "c"), 10)] == ["b", "c", "a"]
    assert len(predict.top_k(p, ("a", "b", "c"), 0)) == 1


# ---------------------------------------------------------------------------------------------------------------
# loading models safely


def _save(model, path):
    model.save(path)
    return path


def test_load_model_refuses_a_lambda_layer(tmp_path):
    import keras

    inputs = keras.Input((32, 32, 3))
    flat = keras.layers.Flatten()(inputs)
    unsafe = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Lambda(lambda x: x * 2)(flat)))
    safe = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    _save(safe, tmp_path / "safe.keras")
    _save(unsafe, tmp_path / "unsafe.keras")
    assert models.load_model(tmp_path / "safe.keras").count_params() == 32 * 32 * 3 * 2 + 2  # the control loads
    with pytest.raises(ValueError) as info:
        models.load_model(tmp_path / "unsafe.keras")
    assert "cannot be loaded safely" in str(info.value) and "lambda" in str(info.value).lower()


def test_load_model_refuses_other_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        models.load_model(tmp_path / "missing.keras")
    (tmp_path / "model.h5").write_bytes(b"x")
    with pytest.raises(FileNotFoundError):
        models.load_model(tmp_path / "model.h5")
    (tmp_path / "garbage.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a Keras model file"):
        models.load_model(tmp_path / "garbage.keras")


def test_load_model_caches_per_file_version(tmp_path):
    import keras

    path = _save(keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalMaxPooling2D(), keras.layers.Dense(2)]),
                 tmp_path / "m.keras")
    first = models.load_model(path)
    assert models.load_model(path) is first
    assert models.load_model(str(path)) is first
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    assert models.load_model(path) is not first


def test_no_unsafe_deserialization_anywhere():
    """Nothing in the product turns Keras's safe mode off or unpickles freely (the Lambda test above shows what safe
    mode refuses; this one that no file switches it off)."""
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    product = [ROOT / p for p in tracked if not p.startswith("tests/")]
    assert ROOT / "app.py" in product and ROOT / "cifar_core" / "models.py" in product
    pattern = re.compile(r"safe_mode\s*=\s*False|enable_unsafe_deserialization|allow_pickle\s*=\s*True"
                         r"|pickle\.loads?\(")
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in product
                 for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def test_a_bfloat16_model_is_served_as_float32_with_the_same_predictions(tmp_path):
    import keras

    from cifar_core.builder import build_model
    from cifar_core.presets import TINY

    policy = keras.mixed_precision.global_policy().name
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        trained = build_model(TINY)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    trained.save(tmp_path / "bf16.keras")
    x = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3)).astype(np.float32)

    served = models.load_model(tmp_path / "bf16.keras")

    assert {layer.dtype_policy.compute_dtype for layer in served.layers} == {"float32"}
    assert [layer.name for layer in served.layers] == [layer.name for layer in trained.layers]
    expected = np.asarray(trained.predict_on_batch(x), dtype=np.float32)
    np.testing.assert_allclose(predict.predict_proba(served, x), expected, atol=0.02)


def _chain_with_batch_norms():
    """Five BatchNormalizations: three that fold (after a linear conv, after a linear conv through max-pooling
    with positive scales, after a Dense) and two that must not (after a ReLU conv; through max-pooling with a
    negative scale). Their statistics are random so that folding has something to get wrong."""
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((12, 12, 3)), keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(6, 3, use_bias=False, padding="same"), keras.layers.MaxPooling2D(2),
        keras.layers.BatchNormalization(scale=False, name="through_pool"), keras.layers.Activation("gelu"),
        keras.layers.Conv2D(6, 3, padding="same"), keras.layers.BatchNormalization(name="direct"),
        keras.layers.Conv2D(6, 3, padding="same", activation="relu"),
        keras.layers.BatchNormalization(name="after_relu"),
        keras.layers.Conv2D(6, 3, padding="same"), keras.layers.MaxPooling2D(2),
        keras.layers.BatchNormalization(name="negative_through_pool"),
        keras.layers.Flatten(), keras.layers.Dense(8), keras.layers.BatchNormalization(name="after_dense"),
        keras.layers.Dense(10, activation="softmax", dtype="float32", name="predictions")])
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, n))
            layer.moving_variance.assign(rng.uniform(0.2, 3.0, n))
            layer.beta.assign(rng.normal(0, 0.5, n))
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 2.0, n) * (-1 if layer.name == "negative_through_pool" else 1))
    return model


def test_serving_model_folds_exactly_the_batch_norms_that_commute_and_predicts_the_same():
    import keras

    model = _chain_with_batch_norms()
    x = np.random.default_rng(1).integers(0, 256, (32, 12, 12, 3)).astype(np.float32)

    folded = models._fold_batch_norm(model, "float32")

    kept = [layer.name for layer in folded.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert kept == ["after_relu", "negative_through_pool"]
    assert len(folded.layers) == len(model.layers) - 3
    np.testing.assert_allclose(folded.predict_on_batch(x), model.predict_on_batch(x), rtol=1e-4, atol=1e-6)
    # The direct fold by hand: kernel * gamma / sqrt(var + eps), bias * that + beta - mean * that.
    norm, conv = model.get_layer("direct"), model.layers[5]
    scale = norm.gamma.numpy() / np.sqrt(norm.moving_variance.numpy() + norm.epsilon)
    folded_conv = folded.get_layer(conv.name)
    np.testing.assert_allclose(folded_conv.kernel.numpy(), conv.kernel.numpy() * scale, rtol=1e-6)
    np.testing.assert_allclose(folded_conv.bias.numpy(), conv.bias.numpy() * scale + norm.beta.numpy()
                               - norm.moving_mean.numpy() * scale, rtol=1e-5, atol=1e-6)


def test_serving_model_computes_in_bfloat16_except_the_head_and_is_made_once(monkeypatch):
    model = _chain_with_batch_norms()
    monkeypatch.setattr(models, "_serving_policy", lambda: "mixed_bfloat16")
    x = np.random.default_rng(1).integers(0, 256, (32, 12, 12, 3)).astype(np.float32)

    served = models.serving_model(model)

    assert models.serving_model(model) is served
    policies = {layer.name: layer.dtype_policy.name for layer in served.layers}
    assert policies.pop("predictions") == "float32"
    assert set(policies.values()) == {"mixed_bfloat16"}
    np.testing.assert_allclose(predict.predict_proba(model, x), model.predict_on_batch(x), atol=0.03)
