"""Looking inside a model: Grad-CAM saliency, per-layer feature maps, first-layer filters.

Pure functions from (model, image) to NumPy arrays; charts.py draws them. Every model the builder makes is a
keras.Sequential, so the forward pass is replayed layer by layer, keeping what each layer produced.
"""

from __future__ import annotations

import numpy as np


class FiltersNotImagesError(ValueError):
    """The first convolution's kernels are not pictures: it sees channels other than an image's colours."""


class NoConvolutionError(ValueError):
    """The model has no convolution layer with a spatial output, so there is no map to show."""


def _forward(model, image: np.ndarray, keep=lambda layer: False):
    """Runs one uint8 image through the layers; returns (kept outputs by layer name, input to the last layer)."""
    import tensorflow as tf

    x = tf.convert_to_tensor(np.asarray(image, dtype=np.float32)[None])
    kept = {}
    for layer in model.layers[:-1]:
        x = layer(x, training=False)
        if keep(layer):
            kept[layer.name] = x
    return kept, x


def _positions(shape) -> int:
    """Height x width of a (batch, height, width, channels) shape; 0 for anything else."""
    return int(shape[1] or 0) * int(shape[2] or 0) if len(shape) == 4 else 0


def last_conv_layer(model):
    """The last Conv2D layer whose output is a map (wider than 1 x 1): where Grad-CAM looks."""
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    if not convs:
        raise NoConvolutionError("This model has no convolution layer, so it has no spatial map to explain; "
                                 "add a Conv2D layer to see where it looks.")
    spatial = [layer for layer in convs if _positions(layer.output.shape) > 1]
    if not spatial:
        raise NoConvolutionError("Every convolution layer of this model outputs a 1 × 1 map, so there is no "
                                 "spatial map to explain; a convolution before the map shrinks to 1 × 1 would have "
                                 "one.")
    return spatial[-1]


def cam_method(model) -> str:
    """'Grad-CAM' when the layers after the last convolution pool its map globally (or to 1 x 1) before the head,
    'HiResCAM' when they flatten a wider map. Grad-CAM averages each channel's gradient over the map, which is
    exact when every position is pooled alike; after Flatten the head weighs every position on its own (a model
    that tells classes apart by where something is has positive weights in one place and negative ones elsewhere,
    and their average can be negative for every channel, leaving an empty map), so the gradient is kept per
    position and multiplied with the map element-wise (HiResCAM, Draelos & Carin, 2020)."""
    target = last_conv_layer(model)
    for layer in model.layers[model.layers.index(target) + 1:]:
        kind = type(layer).__name__
        if kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
            return "Grad-CAM"
        if kind == "Flatten":
            return "HiResCAM" if _positions(layer.input.shape) > 1 else "Grad-CAM"
    return "Grad-CAM"


def grad_cam(model, image: np.ndarray, class_index: int | None = None) -> tuple[np.ndarray, int]:
    """(heatmap in [0, 1] at the image's size, class explained). Grad-CAM (Selvaraju et al., 2017) on the last
    Conv2D layer with a spatial output, with gradients of the pre-softmax score of `class_index` (default: the
    predicted class); HiResCAM, its element-wise form, when the model flattens that map (see cam_method)."""
    import tensorflow as tf

    target = last_conv_layer(model)
    # The output Dense (followed by softmax, or by the logit scale and softmax): its logits are the scores.
    head_at = max(i for i, layer in enumerate(model.layers) if type(layer).__name__ == "Dense")
    head = model.layers[head_at]
    with tf.GradientTape() as tape:
        x = tf.convert_to_tensor(np.asarray(image, dtype=np.float32)[None])
        conv_out = None
        for layer in model.layers[:head_at]:
            x = layer(x, training=False)
            if layer is target:
                conv_out = x
                tape.watch(conv_out)
        logits = tf.matmul(tf.cast(x, tf.float32), tf.cast(head.kernel, tf.float32))
        if head.use_bias:
            logits = logits + tf.cast(head.bias, tf.float32)
        if class_index is None:
            class_index = int(tf.argmax(logits[0]))
        score = logits[0, class_index]
    grads = tf.cast(tape.gradient(score, conv_out), tf.float32)[0]
    fmap = tf.cast(conv_out, tf.float32)[0]
    if cam_method(model) == "HiResCAM":
        weighted = grads * fmap
    else:
        weighted = fmap * tf.reduce_mean(grads, axis=(0, 1))
    cam = tf.nn.relu(tf.reduce_sum(weighted, axis=-1)).numpy()
    cam = cam / cam.max() if cam.max() > 0 else cam
    size = np.asarray(image).shape[:2]
    resized = tf.image.resize(cam[..., None], size, method="bilinear").numpy()[..., 0]
    return np.clip(resized, 0.0, 1.0), class_index


def feature_maps(model, image: np.ndarray) -> list[dict]:
    """For each Conv2D layer: {'name', 'output_shape', 'maps': (channels, H, W) float32, most active first,
    'order': the channel indices in that order}."""
    kept, _ = _forward(model, image, keep=lambda layer: type(layer).__name__ == "Conv2D")
    result = []
    for name, output in kept.items():
        maps = np.asarray(output, dtype=np.float32)[0].transpose(2, 0, 1)
        order = np.argsort(-maps.mean(axis=(1, 2)), kind="stable")
        result.append({"name": name, "output_shape": tuple(output.shape[1:]), "maps": maps[order],
                       "order": order.tolist()})
    return result


def first_filter_layer(model):
    """The first layer with filters: a Conv2D, or PatchWhitening when the model starts with one."""
    conv = next((layer for layer in model.layers if type(layer).__name__ in ("Conv2D", "PatchWhitening")), None)
    if conv is None:
        raise NoConvolutionError("This model has no convolution layer, so it has no filters to show.")
    return conv


def first_layer_filters(model) -> np.ndarray:
    """The first filter layer's kernels (first_filter_layer) as (filters, k, k, channels) uint8 images, each min-max
    scaled on its own so its pattern is visible."""
    kernel = np.asarray(first_filter_layer(model).kernel, dtype=np.float32).transpose(3, 0, 1, 2)
    if kernel.shape[-1] == 1:  # a grey image's filters, drawn in grey
        kernel = np.repeat(kernel, 3, axis=-1)
    if kernel.shape[-1] != 3:  # a layer before it changed the channels (a Dense before the first convolution)
        raise FiltersNotImagesError(f"This model's first convolution sees {kernel.shape[-1]} channels, not an "
                                    "image's colours, so its filters cannot be drawn as pictures.")
    low = kernel.min(axis=(1, 2, 3), keepdims=True)
    span = kernel.max(axis=(1, 2, 3), keepdims=True) - low
    scaled = np.divide(kernel - low, span, out=np.full_like(kernel, 0.5), where=span > 0)
    return np.round(scaled * 255).astype(np.uint8)


DIMMED = 0.6  # how much of its brightness a pixel the map leaves out loses, at opacity 1


def overlay(image: np.ndarray, heatmap: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """The heatmap over the image as uint8 RGB: tinted from red to yellow as the heat rises, and dimmed where the
    map is cold, both in proportion to `opacity`. The tint alone had hidden a yellow bird's hot spot in its own
    yellow (a new user saw nothing at the default opacity); dimming what the model leaves out shows the spot on any
    image. A map with nothing in it leaves the image as it is."""
    h = np.clip(heatmap, 0, 1)[..., None]
    colour = np.concatenate([np.ones_like(h), h, np.zeros_like(h)], axis=-1) * 255  # red (cold) to yellow (hot)
    image = np.asarray(image, dtype=np.float32)
    if h.max() > 0:
        image = image * (1 - opacity * DIMMED * (1 - h))
    alpha = opacity * h
    blended = (1 - alpha) * image + alpha * colour
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def enlarged_overlay(image: np.ndarray, heatmap: np.ndarray, opacity: float = 0.5, scale: int = 8) -> np.ndarray:
    """The overlay at `scale` times the image's size, as uint8 RGB: the image enlarged nearest-neighbour (its pixels
    stay sharp), the heatmap enlarged bilinearly (it is a smooth estimate), then blended by overlay()."""
    from PIL import Image

    image = np.asarray(image, dtype=np.uint8)
    big = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
    smooth = np.asarray(Image.fromarray(np.round(np.clip(heatmap, 0, 1) * 255).astype(np.uint8)).resize(
        big.shape[1::-1], Image.Resampling.BILINEAR), dtype=np.float32) / 255
    return overlay(big, smooth, opacity)


def saliency_png(model, image: np.ndarray, class_index: int | None = None, opacity: float = 0.5,
                 scale: int = 8) -> tuple[bytes, int]:
    """The Grad-CAM overlay on the nearest-neighbour enlarged input, as PNG bytes, and the class explained."""
    import io

    from PIL import Image

    heatmap, class_index = grad_cam(model, image, class_index)
    buffer = io.BytesIO()
    Image.fromarray(enlarged_overlay(image, heatmap, opacity, scale)).save(buffer, format="PNG")
    return buffer.getvalue(), class_index
