"""cifar_core.explain: Grad-CAM, feature maps, first-layer filters and the overlay, on models whose weights are set
by hand so that every expected array can be written down."""

import io

import numpy as np
import pytest
from PIL import Image

from cifar_core import explain
from cifar_core import spec as S
from cifar_core.builder import build_model

try:
    import helpers
except ImportError:
    from tests import helpers


def brightness_model(filters=1):
    """Rescaling -> Conv2D(filters, 1x1, linear; filter f sums the channels times f + 1) -> GlobalAveragePooling2D ->
    Dense(2) with kernel [[1, -1], ...]: class 0 scores the mean brightness, class 1 its negative."""
    model = build_model(S.ModelSpec("cam", (S.Conv2D(filters, 1, activation="linear"), S.GlobalAveragePooling2D()),
                                    num_classes=2))
    conv, head = model.layers[1], model.layers[-1]
    conv.set_weights([np.ones((1, 1, 3, filters), np.float32) * np.arange(1, filters + 1, dtype=np.float32),
                      np.zeros(filters, np.float32)])
    head.set_weights([np.tile(np.array([[1.0, -1.0]], np.float32), (filters, 1)), np.zeros(2, np.float32)])
    return model


def ramp():
    """Columns 0..31 of brightness 8 * column."""
    image = np.zeros((32, 32, 3), np.uint8)
    image[:] = (np.arange(32) * 8)[None, :, None]
    return image


def test_grad_cam_by_hand():
    # score_0 = mean(fmap), so d score_0 / d fmap = 1 / (32 * 32) everywhere: the channel weight is positive and the
    # map is relu(fmap) / max = brightness / max brightness = column / 31.
    heatmap, explained = explain.grad_cam(brightness_model(), ramp())
    assert explained == 0  # the predicted class: mean brightness > 0 > its negative
    assert heatmap.shape == (32, 32)
    np.testing.assert_allclose(heatmap, np.tile(np.arange(32) / 31, (32, 1)), atol=1e-5)
    # class 1 scores -mean: a negative weight, relu leaves nothing
    heatmap, explained = explain.grad_cam(brightness_model(), ramp(), class_index=1)
    assert explained == 1 and np.abs(heatmap).max() == 0


def test_no_convolution():
    model = build_model(S.ModelSpec("flat", (S.Flatten(), S.Dense(4))))
    with pytest.raises(explain.NoConvolutionError):
        explain.grad_cam(model, ramp())
    with pytest.raises(explain.NoConvolutionError):
        explain.first_layer_filters(model)


def test_feature_maps_most_active_first():
    maps = explain.feature_maps(brightness_model(filters=2), ramp())
    assert len(maps) == 1
    (entry,) = maps
    assert entry["output_shape"] == (32, 32, 2) and entry["maps"].shape == (2, 32, 32)
    assert entry["order"] == [1, 0]  # filter 1 (weight 2) is twice as bright as filter 0
    expected = 3 * np.tile(np.arange(32) * 8 / 255, (32, 1))
    np.testing.assert_allclose(entry["maps"][0], 2 * expected, rtol=1e-5)
    np.testing.assert_allclose(entry["maps"][1], expected, rtol=1e-5)


def test_first_layer_filters_scaled_each_on_its_own():
    model = build_model(S.ModelSpec("f", (S.Conv2D(2, 2, activation="linear"), S.Flatten())))
    kernel = np.zeros((2, 2, 3, 2), np.float32)
    kernel[..., 0] = np.arange(12).reshape(2, 2, 3)  # 0 .. 11
    kernel[..., 1] = 7.0  # constant
    model.layers[1].set_weights([kernel, np.zeros(2, np.float32)])
    filters = explain.first_layer_filters(model)
    assert filters.shape == (2, 2, 2, 3) and filters.dtype == np.uint8
    np.testing.assert_array_equal(filters[0], np.round(np.arange(12).reshape(2, 2, 3) / 11 * 255).astype(np.uint8))
    assert (filters[1] == 128).all()  # no pattern: mid grey (0.5 * 255, rounded)


def test_overlay():
    image = np.full((4, 4, 3), 100, np.uint8)
    np.testing.assert_array_equal(explain.overlay(image, np.ones((4, 4)), opacity=0.0), image)
    np.testing.assert_array_equal(explain.overlay(image, np.zeros((4, 4)), opacity=1.0), image)
    hot = explain.overlay(np.zeros((4, 4, 3), np.uint8), np.ones((4, 4)), opacity=1.0)
    assert (hot == [255, 255, 0]).all()  # yellow where the map is 1
    half = explain.overlay(np.zeros((1, 1, 3), np.uint8), np.full((1, 1), 0.5), opacity=1.0)
    # alpha = 0.5, colour (255, 127.5, 0): 0.5 * 255 = 127.5 -> 128; 0.5 * 127.5 = 63.75 -> 64
    assert half[0, 0].tolist() == [128, 64, 0]


def test_saliency_png():
    png, explained = explain.saliency_png(brightness_model(), ramp(), scale=4)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (128, 128) and explained == 0
    pixels = np.asarray(image.convert("RGB")).astype(int)
    assert pixels[:, :8].sum() < pixels[:, -8:].sum()  # dark and cold on the left, bright and hot on the right


def test_saliency_cli(tmp_path, capsys):
    from cifar_core.__main__ import main

    picture = tmp_path / "in.png"
    picture.write_bytes(helpers.image_bytes(ramp()))
    out = tmp_path / "out.png"
    assert main(["saliency", str(helpers.tiny_run()), str(picture), "--class", "cat", "--out", str(out)]) == 0
    assert "class cat" in capsys.readouterr().out and Image.open(out).size == (256, 256)
    assert main(["saliency", str(helpers.tiny_run()), str(picture), "--class", "unicorn", "--out", str(out)]) == 2
    assert "--class must be one of" in capsys.readouterr().err
