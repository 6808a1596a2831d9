"""Classification: images -> class probabilities (through the model's serving copy) -> top-k labels.

A bad file never stops the others: each gets its own sentence.
"""

from __future__ import annotations

import numpy as np

from .images import ImageError, to_input_array
from .models import serving_model


def predict_proba(model, x: np.ndarray, tta: bool = False) -> np.ndarray:
    """Class probabilities for a batch of uint8 images; with tta, the mean of the probabilities for the images and
    their mirror images (test-time augmentation). Runs serving_model(model) through predict_on_batch, Keras's
    compiled predict function, several times faster for one image than an eager model(x) (benchmarks/README.md)."""
    model = serving_model(model)
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
