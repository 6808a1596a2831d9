"""Classification: images -> class probabilities (through the model's serving copy) -> top-k labels.

A bad file never stops the others: each gets its own sentence.
"""

from __future__ import annotations

import numpy as np

from .config import TTA_MODES
from .images import ImageError, read_input
from .models import output_sizes, serving_model

# Images, views included, per predict call: the evaluation's 500 and their mirror images, as before the shifted
# views; 1,000 of `fast` hold about 0.3 GB of activations.
MAX_IMAGES_PER_CALL = 1000
# ... and fewer for a model whose widest layer output would take more than this for a call (two float32 outputs
# alive at a time): a model file's architecture is whatever the file says.
MAX_CALL_BYTES = 2**30


def tta_views(x: np.ndarray, tta: str) -> list[np.ndarray]:
    """The batches a test-time augmentation averages over, as airbench94 weighs them: the images and their mirror
    images; with mirror-shift also both shifted one pixel up-left and down-right (reflect padding), the shifted
    four together weighing as much as the first two."""
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {tta!r}.")
    if tta == "off":
        return [x]
    views = [x, x[:, :, ::-1]]
    if tta == "mirror-shift":
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        height, width = x.shape[1:3]
        for shifted in (padded[:, :height, :width], padded[:, 2:, 2:]):
            views += [shifted, shifted[:, :, ::-1]]
    return views


def predict_proba(model, x: np.ndarray, tta: str = "off") -> np.ndarray:
    """Class probabilities for a batch of uint8 images, averaged over tta's views (tta_views), the views of a chunk
    of images in one call. Runs serving_model(model) through predict_on_batch, Keras's compiled predict function,
    several times faster for one image than an eager model(x) (benchmarks/README.md)."""
    model = serving_model(model)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    widest = max(output_sizes(model), default=1) or 1
    chunk = max(1, min(MAX_IMAGES_PER_CALL, MAX_CALL_BYTES // (8 * widest))
                // len(tta_views(x[:1], tta)))
    return np.concatenate([_averaged(model, x[start:start + chunk], tta) for start in range(0, len(x), chunk)])


def _averaged(model, x: np.ndarray, tta: str) -> np.ndarray:
    views = tta_views(x, tta)
    out = np.asarray(model.predict_on_batch(np.concatenate(views)), dtype=np.float32).reshape(len(views), len(x), -1)
    if tta == "mirror-shift":
        return (out[:2].mean(axis=0) + out[2:].mean(axis=0)) / 2
    return out.mean(axis=0)


TTA_SENTENCES = {
    "mirror": "each image's prediction is the average over the image and its mirror image.",
    "mirror-shift": "each image's prediction averages the image and its mirror image with both shifted a pixel "
                    "up-left and down-right.",
}


def top_k(probabilities: np.ndarray, class_names, k: int = 3) -> list[dict]:
    order = np.argsort(-probabilities)[: max(1, min(k, len(probabilities)))]
    return [{"label": class_names[i], "probability": float(probabilities[i])} for i in order]


def classify(model, class_names, files: list[tuple[str, bytes]], k: int = 3, tta: str = "off") -> list[dict]:
    """One entry per file: {'file', 'top': [...]} (and 'note', images.read_input's sentence, for an image that does
    not suit the model) or {'file', 'error': sentence}; a bad file never stops the others."""
    results, inputs = [], []
    for name, data in files:
        try:
            image, note = read_input(data)
            inputs.append(image)
            results.append({"file": name, **({"note": note} if note else {})})
        except ImageError as e:
            results.append({"file": name, "error": str(e)})
    if inputs:
        probabilities = iter(predict_proba(model, np.stack(inputs), tta))
        for result in results:
            if "error" not in result:
                result["top"] = top_k(next(probabilities), class_names, k)
    return results
