"""cifar_core.explain and the charts that draw it: Grad-CAM, feature maps, first-layer filters and the overlay, on
models whose weights are set by hand so that every expected array can be written down, on small models trained on
synthetic images where the right answer is known (a bright square), and on every preset."""

import io

import helpers
import numpy as np
import pytest
from PIL import Image

from cifar_core import charts, explain, presets
from cifar_core import spec as S
from cifar_core.builder import build_model


def brightness_model(filters=1, logit_scale=1.0):
    """Rescaling -> Conv2D(filters, 1x1, linear; filter f sums the channels times f + 1) -> GlobalAveragePooling2D ->
    Dense(2) with kernel [[1, -1], ...]: class 0 scores the mean brightness, class 1 its negative."""
    model = build_model(S.ModelSpec("cam", (S.Conv2D(filters, 1, activation="linear"), S.GlobalAveragePooling2D()),
                                    num_classes=2, logit_scale=logit_scale))
    conv = model.layers[1]
    head = model.layers[-1] if logit_scale == 1 else model.get_layer("logits")
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


def test_grad_cam_reads_the_logits_before_a_logit_scale():
    # a positive logit scale changes neither the explained class nor the normalised map
    heatmap, explained = explain.grad_cam(brightness_model(logit_scale=1 / 9), ramp())
    assert explained == 0
    np.testing.assert_allclose(heatmap, np.tile(np.arange(32) / 31, (32, 1)), atol=1e-5)


def test_first_layer_filters_of_a_whitened_model_are_the_whitening_kernels():
    model = build_model(S.ModelSpec("w", (S.PatchWhitening(2), S.Conv2D(4, 3), S.Flatten())),
                        np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3)).astype(np.uint8))
    filters = explain.first_layer_filters(model)
    assert filters.shape == (24, 2, 2, 3)
    assert all(f.min() == 0 and f.max() == 255 for f in filters)



def test_a_first_convolution_that_does_not_see_the_three_colours_has_no_filters_to_draw():
    import keras

    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Dense(2), keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalMaxPooling2D(), keras.layers.Dense(10)])
    with pytest.raises(explain.FiltersNotImagesError, match="first convolution sees 2 channels, not an image's"):
        explain.first_layer_filters(model)
    assert explain.feature_maps(model, ramp())  # its maps are still there to draw


def test_no_convolution():
    model = build_model(S.ModelSpec("flat", (S.Flatten(), S.Dense(4))))
    with pytest.raises(explain.NoConvolutionError, match="no convolution layer"):
        explain.grad_cam(model, ramp())
    with pytest.raises(explain.NoConvolutionError):
        explain.first_layer_filters(model)
    assert explain.feature_maps(model, ramp()) == []
    # Convolutions whose outputs are all 1 x 1 have no map to explain either, and the sentence says why.
    pooled = build_model(S.ModelSpec("pooled", (S.MaxPooling2D(32), S.Conv2D(4, 1), S.Flatten())))
    with pytest.raises(explain.NoConvolutionError, match="1 × 1"):
        explain.grad_cam(pooled, ramp())


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


def test_known_filters_render_to_the_expected_pixels():
    # Filter 0's 2x2 kernel, row by row: black, red / green, blue (weights 0 or 1 per colour, so scaling to 0..255
    # keeps them); filter 1 is constant, so mid grey. Drawn 2x enlarged, two to a row, with a white 1-pixel gap.
    model = build_model(S.ModelSpec("f", (S.Conv2D(2, 2, activation="linear"), S.Flatten())))
    kernel = np.zeros((2, 2, 3, 2), np.float32)
    kernel[0, 1, 0, 0] = kernel[1, 0, 1, 0] = kernel[1, 1, 2, 0] = 1.0
    kernel[..., 1] = -0.5
    model.layers[1].set_weights([kernel, np.zeros(2, np.float32)])
    grid = charts.filter_grid(explain.first_layer_filters(model), columns=2, scale=2)
    K, R, G, B, W, M = (0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (128, 128, 128)
    expected = np.array([[K, K, R, R, W, M, M, M, M],
                         [K, K, R, R, W, M, M, M, M],
                         [G, G, B, B, W, M, M, M, M],
                         [G, G, B, B, W, M, M, M, M]], np.uint8)
    np.testing.assert_array_equal(grid, expected)
    # at the default size, 2 x 2 filters become 32-pixel tiles 4 pixels apart (1 had run them into one strip)
    tiles = charts.filter_grid(np.zeros((24, 2, 2, 3), np.uint8))
    assert tiles.shape == (2 * 32 + 4, 16 * 32 + 15 * 4, 3) and (tiles[:, 32:36] == 255).all()


def test_overlay():
    image = np.full((4, 4, 3), 100, np.uint8)
    np.testing.assert_array_equal(explain.overlay(image, np.ones((4, 4)), opacity=0.0), image)
    np.testing.assert_array_equal(explain.overlay(image, np.zeros((4, 4)), opacity=1.0), image)
    hot = explain.overlay(np.zeros((4, 4, 3), np.uint8), np.ones((4, 4)), opacity=1.0)
    assert (hot == [255, 255, 0]).all()  # yellow where the map is 1
    half = explain.overlay(np.zeros((1, 1, 3), np.uint8), np.full((1, 1), 0.5), opacity=1.0)
    # alpha = 0.5, colour (255, 127.5, 0): 0.5 * 255 = 127.5 -> 128; 0.5 * 127.5 = 63.75 -> 64
    assert half[0, 0].tolist() == [128, 64, 0]
    # what the map leaves out is dimmed (at opacity 1 to 40% of its brightness, at 0.5 to 70%), so a hot spot shows
    # on an image of the tint's own colours too
    image = np.full((1, 2, 3), 100, np.uint8)
    for opacity, cold in ((1.0, 40), (0.5, 70)):
        spot = explain.overlay(image, np.array([[1.0, 0.0]]), opacity=opacity)
        assert spot[0, 1].tolist() == [cold] * 3
    assert explain.overlay(image, np.array([[1.0, 0.0]]), opacity=1.0)[0, 0].tolist() == [255, 255, 0]


def test_enlarged_overlay():
    image = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3) * 20
    plain = explain.enlarged_overlay(image, np.ones((2, 2)), opacity=0.0, scale=3)
    assert plain.shape == (6, 6, 3) and plain.dtype == np.uint8
    np.testing.assert_array_equal(plain, charts.enlarge(image, 3))  # nearest-neighbour: the pixels stay sharp
    assert (explain.enlarged_overlay(image, np.ones((2, 2)), opacity=1.0, scale=3) == [255, 255, 0]).all()


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


# Feature maps: the layers' own outputs.

def test_feature_map_shapes_and_values_are_each_convolutions_output():
    import keras

    model = build_model(S.ModelSpec("maps", (
        S.Conv2D(6, 5, strides=2, padding="valid"), S.MaxPooling2D(2), S.BatchNormalization(),
        S.Conv2D(5, 3), S.Conv2D(3, 1, activation="tanh"), S.GlobalAveragePooling2D())))
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    entries = explain.feature_maps(model, image)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [e["name"] for e in entries] == [layer.name for layer in convs]
    for entry, conv in zip(entries, convs):
        height, width, channels = conv.output.shape[1:]
        assert entry["output_shape"] == tuple(conv.output.shape[1:])
        assert entry["maps"].shape == (channels, height, width)
        reference = np.asarray(keras.Model(model.inputs, conv.output)([image[None].astype(np.float32)]))[0]
        np.testing.assert_allclose(entry["maps"], reference.transpose(2, 0, 1)[entry["order"]], rtol=1e-5, atol=1e-5)
        assert np.all(np.diff(entry["maps"].mean(axis=(1, 2))) <= 1e-6)  # most active first
    assert [e["output_shape"] for e in entries] == [(14, 14, 6), (7, 7, 5), (7, 7, 3)]


# Grad-CAM on every model the builder can make that has a convolution.

ODD_MODELS = {
    "strided valid conv, BN, dropout, dense head": (
        S.Conv2D(8, 5, strides=2, padding="valid"), S.BatchNormalization(), S.Conv2D(8, 3, activation="gelu"),
        S.Dropout(0.3), S.Flatten(), S.Dense(16), S.Dropout(0.5)),
    "average pooling, layer norm, global max": (
        S.Conv2D(8, 3), S.AveragePooling2D(2), S.LayerNormalization(), S.Conv2D(8, 3, activation="tanh"),
        S.GlobalMaxPooling2D()),
    "a 1 x 1 convolution after the last map": (
        S.Conv2D(4, 3), S.MaxPooling2D(32), S.Conv2D(4, 1), S.Flatten()),
}


@pytest.fixture
def precision(request):
    """Builds under the given Keras precision policy (training uses mixed_bfloat16 on this kind of CPU), then gives
    the process its policy back."""
    import keras

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(getattr(request, "param", "float32"))
    yield
    keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"], indirect=True)
@pytest.mark.parametrize("layers", [*[p.spec.layers for p in presets.PRESETS.values()], *ODD_MODELS.values()],
                         ids=[*presets.PRESETS, *ODD_MODELS])
def test_grad_cam_works_for_every_kind_of_model(layers, precision):
    model = build_model(S.ModelSpec("any", layers))
    image = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    predicted = int(np.argmax(model(image[None].astype(np.float32), training=False)))
    heatmap, explained = explain.grad_cam(model, image)
    assert explained == predicted and heatmap.shape == (32, 32) and heatmap.dtype == np.float32
    assert np.isfinite(heatmap).all() and heatmap.min() >= 0 and heatmap.max() <= 1
    heatmap, explained = explain.grad_cam(model, image, class_index=9)
    assert explained == 9 and heatmap.shape == (32, 32)
    if layers is ODD_MODELS["a 1 x 1 convolution after the last map"]:
        assert explain.last_conv_layer(model) is model.layers[1]  # the last convolution with a map
        assert explain.cam_method(model) == "Grad-CAM"  # its map is pooled to 1 x 1 before Flatten


# Grad-CAM where the answer is known: synthetic images whose class is decided by one bright square.

SIDE = 8
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], np.uint8)


def bright_squares(n, rng, by):
    """n 32x32 images of dim noise (0..59), each with one SIDE x SIDE square; its class is the quadrant the (white)
    square sits in when `by` is 'position', its colour when `by` is 'colour' (the square anywhere). Returns
    (images, labels, the squares' top-left corners)."""
    images = rng.integers(0, 60, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, n)
    corners = []
    for image, label in zip(images, labels):
        if by == "position":
            top, left = np.array([label // 2, label % 2]) * 16 + rng.integers(0, 16 - SIDE + 1, 2)
            image[top:top + SIDE, left:left + SIDE] = 255
        else:
            top, left = rng.integers(0, 32 - SIDE + 1, 2)
            image[top:top + SIDE, left:left + SIDE] = COLOURS[label]
        corners.append((int(top), int(left)))
    return images, labels, corners


def trained_on_squares(layers, by):
    """A small model trained 3 epochs on 800 such images; (model, 100 test images, their labels, their corners)."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, y, _ = bright_squares(800, rng, by)
    x_test, y_test, corners = bright_squares(100, rng, by)
    model = build_model(S.ModelSpec("squares", layers, num_classes=4))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    return model, x_test, y_test, corners


def share_of_peaks_on_the_square(model, images, corners, margin=2):
    hits = 0
    for image, (top, left) in zip(images, corners):
        heatmap, _ = explain.grad_cam(model, image)
        row, col = np.unravel_index(np.argmax(heatmap), heatmap.shape)
        hits += bool(heatmap.max() > 0 and top - margin <= row < top + SIDE + margin
                     and left - margin <= col < left + SIDE + margin)
    return hits / len(images)


@pytest.mark.usefixtures("precision")
def test_grad_cam_peaks_on_the_square_whose_position_is_the_class():
    # Only a head that keeps positions can tell quadrants apart, so this model flattens its last map: Grad-CAM's
    # channel-averaged gradient is negative here for every channel (positive weights in the class's quadrant, negative
    # in the three others) and leaves an empty map; the element-wise form (HiResCAM) finds the square.
    model, x, y, corners = trained_on_squares(
        (S.Conv2D(16, 3), S.MaxPooling2D(2), S.Conv2D(16, 3), S.MaxPooling2D(2), S.Flatten()), "position")
    assert (np.argmax(model(x.astype(np.float32)), axis=1) == y).mean() > 0.9  # it learned the task
    assert explain.cam_method(model) == "HiResCAM"
    assert share_of_peaks_on_the_square(model, x, corners) >= 0.8


@pytest.mark.usefixtures("precision")
def test_grad_cam_peaks_on_the_square_whose_colour_is_the_class():
    # A global-average head: classic Grad-CAM.
    model, x, y, corners = trained_on_squares((S.Conv2D(16, 3), S.Conv2D(16, 3), S.GlobalAveragePooling2D()),
                                              "colour")
    assert (np.argmax(model(x.astype(np.float32)), axis=1) == y).mean() > 0.9
    assert explain.cam_method(model) == "Grad-CAM"
    assert share_of_peaks_on_the_square(model, x, corners) >= 0.8
