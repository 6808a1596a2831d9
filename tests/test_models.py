"""cifar_core.models: which file a model reference names, the class names and test-time augmentation a model is used
with, safe loading, and the serving copy (BatchNormalization folded, bfloat16 where the CPU has it)."""

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cifar_core import models, predict, runs
from cifar_core.data import CIFAR10_CLASSES

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------------------------
# what a reference names


def test_a_reference_names_the_shipped_model_a_run_or_from_the_command_line_a_file(tmp_path):
    assert models.resolve_model("default") == (models.DEFAULT_RUN / "model.keras", models.DEFAULT_RUN)
    run_dir = tmp_path / "20260101-000000-tiny"
    run_dir.mkdir()
    (run_dir / "model.keras").write_bytes(b"zip")
    assert models.resolve_model("20260101-000000-tiny", tmp_path) == (run_dir / "model.keras", run_dir)
    assert models.resolve_model(str(run_dir / "model.keras"), tmp_path) == (run_dir / "model.keras", None)
    for remote in ("hf://user/model", "gs://bucket/m.keras"):  # Keras would fetch these
        with pytest.raises(runs.RunError, match="is not a local model"):
            models.resolve_model(remote, tmp_path)
    with pytest.raises(runs.RunError, match="is not a run with a trained model"):  # the pages name runs only
        models.resolve_model(str(run_dir), tmp_path, allow_paths=False)
    # a run's model.keras is its own file: one made a link is no model of the run's (it had been served)
    (run_dir / "model.keras").unlink()
    (run_dir / "model.keras").symlink_to("/etc/passwd")
    with pytest.raises(runs.RunError, match="is not a run with a trained model"):
        models.resolve_model("20260101-000000-tiny", tmp_path, allow_paths=False)


def test_the_class_names_a_model_is_used_with(tmp_path):
    assert models.class_names_for(None, 10) == CIFAR10_CLASSES  # a bare .keras file of 10 classes
    assert models.class_names_for(None, 3) == ("class 0", "class 1", "class 2")
    (tmp_path / "config.json").write_text(json.dumps({"class_names": ["cat", "dog", "frog"], "train": {"tta": True}}))
    assert models.class_names_for(tmp_path, 3) == ("cat", "dog", "frog")
    assert models.class_names_for(tmp_path, 10) == tuple(f"class {i}" for i in range(10))  # recorded, not usable
    assert models.tta_for(tmp_path) == "mirror" and models.tta_for(None) == "off"
    for unusable in (["cat", "dog", 3], ["cat", "dog", ""], ["cat", "dog", "x" * 256]):
        (tmp_path / "config.json").write_text(json.dumps({"class_names": unusable}))
        assert models.class_names_for(tmp_path, 3) == ("class 0", "class 1", "class 2"), unusable


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
