"""cifar_core.predict: classify / top_k with and without test-time augmentation. Loading models and the serving
copy are tests/test_models.py's; what an uploaded file becomes is tests/test_images.py's."""

import helpers
import numpy as np
import pytest

from cifar_core import images, models, predict
from cifar_core.images import to_input_array

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
