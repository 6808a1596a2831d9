"""Uploaded bytes -> the 32x32 RGB input a model sees -> top-k labels.

Pillow is told to be strict: formats are detected from content (not the file name) and limited to the five the app
accepts, images over MAX_PIXELS are refused from their header before any pixel is decoded, decompression-bomb
warnings are errors, and truncated files are refused rather than padded.
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
UPLOAD_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "gif", "bmp")
MAX_PIXELS = 50_000_000  # a 48-megapixel phone photo passes; a 10000x10000 bomb does not
MAX_BYTES = 10 * 1024 * 1024

ImageFile.LOAD_TRUNCATED_IMAGES = False
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageError(ValueError):
    """A file that is not a usable image; the message is one sentence for the user."""


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit greyscale: scale the full 0..65535 range to 0..255 rather than clipping at 255.
        values = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.round(values * 255.0 / 65535.0), 0, 255).astype(np.uint8), "L")
    if image.mode == "F":
        image = image.convert("L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "La", "RGBa", "PA"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        # Transparent pixels have no colour of their own: show them on white, as an image viewer does.
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def to_input_array(data: bytes, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """Image file bytes -> (height, width, 3) uint8, upright (EXIF orientation applied), centre-cropped to a
    square and resized. Raises ImageError with a sentence for anything that is not a safe, whole image."""
    if len(data) > MAX_BYTES:
        raise ImageError(f"The file is {len(data) / 2**20:.1f} MB; the limit is {MAX_BYTES // 2**20} MB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ImageError(f"The image is {width}x{height} pixels; the limit is "
                                     f"{MAX_PIXELS // 1_000_000} megapixels.")
                if image.format == "JPEG":
                    image.draft("RGB", (size[0] * 4, size[1] * 4))  # decode large JPEGs at a reduced scale
                image.load()
                image = ImageOps.exif_transpose(image)
                image = _to_rgb(image)
                if image.size != size:
                    image = ImageOps.fit(image, size, method=Image.Resampling.LANCZOS)
                return np.asarray(image, dtype=np.uint8).copy()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"The image is too large to open safely; the limit is {MAX_PIXELS // 1_000_000} "
                         "megapixels.") from None
    except Image.UnidentifiedImageError:
        raise ImageError("This file is not an image in a supported format (PNG, JPEG, WebP, GIF or BMP).") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        reason = "it is truncated" if "truncated" in str(e) else str(e) or type(e).__name__
        raise ImageError(f"The image is corrupt and cannot be decoded ({reason}).") from None


@functools.lru_cache(maxsize=4)
def _load_model_cached(path: str, mtime_ns: int):
    import keras

    from . import layers  # noqa: F401  (registers PatchWhitening and Dirac, which saved models may name)

    # safe_mode=True (Keras's default, stated here on purpose): a .keras file with a Lambda layer or arbitrary
    # code is refused instead of executed.
    model = keras.saving.load_model(path, compile=False, safe_mode=True)
    return _float32_on_cpu(model)


def _float32_on_cpu(model):
    """A float32 copy of a model trained in mixed bfloat16, when no GPU is there. bfloat16 speeds up the training
    of wide nets on this CPU, but not their inference enough to matter (10,000 images, batch 500, measured
    2026-11-29): fast-small 2.9 s in float32 against 4.3 s in bfloat16, fast 11.9 s against 10.6 s, the earlier
    narrow design 8.0 s against 17.0 s. float32 also predicts exactly what the weights say."""
    import keras
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU") or all(
            getattr(layer.dtype_policy, "compute_dtype", "float32") == "float32" for layer in model.layers):
        return model

    def as_float32(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    copy = keras.models.clone_model(model, clone_function=as_float32)
    copy.set_weights(model.get_weights())
    return copy


def load_model(path: str | os.PathLike):
    """A model from a .keras file, loaded once per file version (path and modification time)."""
    path = Path(path)
    if path.suffix != ".keras" or not path.is_file():
        raise FileNotFoundError(f"No model file at {path}; a model is a .keras file written by training.")
    try:
        return _load_model_cached(str(path.resolve()), path.stat().st_mtime_ns)
    except FileNotFoundError:
        raise
    except Exception as e:  # Keras raises many types for a bad file; the user needs one sentence
        raise ValueError(f"The model file {path.name} cannot be loaded safely: {e}") from None


def predict_proba(model, x: np.ndarray, tta: bool = False) -> np.ndarray:
    """Class probabilities for a batch of uint8 images; with tta, the mean of the probabilities for the images and
    their mirror images (test-time augmentation). predict_on_batch runs Keras's compiled predict function:
    measured on this 2-core CPU, 4 ms for one image against 25 ms for an eager model(x)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    if tta:
        both = np.asarray(model.predict_on_batch(np.concatenate([x, x[:, :, ::-1]])), dtype=np.float32)
        return (both[:len(x)] + both[len(x):]) / 2
    return np.asarray(model.predict_on_batch(x), dtype=np.float32)


def top_k(probabilities: np.ndarray, class_names, k: int = 3) -> list[dict]:
    order = np.argsort(-probabilities)[: max(1, min(k, len(probabilities)))]
    return [{"label": class_names[i], "probability": float(probabilities[i])} for i in order]


def classify(model, class_names, files: list[tuple[str, bytes]], k: int = 3, tta: bool = False) -> list[dict]:
    """One entry per file: {'file', 'top': [...]} or {'file', 'error': sentence}; a bad file never stops the
    others."""
    results, inputs = [], []
    for name, data in files:
        try:
            inputs.append(to_input_array(data))
            results.append({"file": name})
        except ImageError as e:
            results.append({"file": name, "error": str(e)})
    if inputs:
        probabilities = iter(predict_proba(model, np.stack(inputs), tta))
        for result in results:
            if "error" not in result:
                result["top"] = top_k(next(probabilities), class_names, k)
    return results
