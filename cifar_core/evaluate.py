"""Evaluation: accuracy, loss, top-3, confusion matrix, per-class precision/recall/F1, and what galleries need.

Metrics are computed with NumPy from the model's probabilities, so every number here can be checked by hand.
Results are stored in the run's eval.json, keyed by split, so each model and split is evaluated once.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np

from . import data as datasets
from . import runs
from .config import tta_mode
from .files import open_regular, read_json, shown, write_json
from .models import DEFAULT_RUN, load_model, resolve_model, tta_for
from .predict import predict_proba
from .spec import MAX_CLASS_NAME_CHARS, MAX_CLASSES

EVAL_BATCH_SIZE = 500


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """cm[i, j] = number of images of true class i predicted as class j."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def per_class_report(cm: np.ndarray, class_names) -> list[dict]:
    """Precision, recall and F1 per class from a confusion matrix; 0 where a denominator is 0."""
    tp = np.diag(cm).astype(float)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    return [{"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, actual)]


def metrics_from_probabilities(probabilities: np.ndarray, y_true: np.ndarray, class_names, split: str,
                               source: str = "") -> dict:
    y_true = np.asarray(y_true, dtype=np.int64)
    n = len(y_true)
    y_pred = probabilities.argmax(axis=1)
    picked = np.clip(probabilities[np.arange(n), y_true], 1e-7, 1.0)
    top3 = np.argsort(-probabilities, axis=1)[:, :3]
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    return {
        "split": split,
        "source": source,
        "n": int(n),
        "accuracy": float((y_pred == y_true).mean()) if n else 0.0,
        "loss": float(-np.log(picked).mean()) if n else 0.0,
        "top3_accuracy": float((top3 == y_true[:, None]).any(axis=1).mean()) if n else 0.0,
        "class_names": list(class_names),
        "confusion_matrix": cm.tolist(),
        "per_class": per_class_report(cm, class_names),
        "predictions": {"true": y_true.tolist(), "pred": y_pred.tolist(),
                        "confidence": [round(float(c), 5) for c in probabilities.max(axis=1)]},
    }


def predict_batches(model, x: np.ndarray, progress=None, tta: str = "off") -> np.ndarray:
    chunks = []
    for start in range(0, len(x), EVAL_BATCH_SIZE):
        chunks.append(predict_proba(model, x[start:start + EVAL_BATCH_SIZE], tta))
        if progress:
            progress(min(1.0, (start + EVAL_BATCH_SIZE) / max(1, len(x))))
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


def evaluate_arrays(model, x, y, class_names, split: str, source: str = "", progress=None,
                    tta: str = "off") -> dict:
    result = metrics_from_probabilities(predict_batches(model, x, progress, tta), y, class_names, split, source)
    return {**result, "tta": tta}


def most_confused_pairs(result: dict, top: int = 5) -> list[dict]:
    """The off-diagonal cells of the confusion matrix, largest first."""
    cm = np.asarray(result["confusion_matrix"])
    names = result["class_names"]
    cells = [(int(cm[i, j]), i, j) for i in range(len(cm)) for j in range(len(cm)) if i != j and cm[i, j] > 0]
    return [{"true": names[i], "pred": names[j], "count": c} for c, i, j in sorted(cells, reverse=True)[:top]]


def select_predictions(result: dict, *, misclassified_only=False, true_class=None, pred_class=None,
                       limit: int = 40) -> list[int]:
    """Indices into the split for a gallery, most confident first."""
    names = result["class_names"]
    p = result["predictions"]
    true, pred, conf = np.array(p["true"]), np.array(p["pred"]), np.array(p["confidence"])
    keep = np.ones(len(true), dtype=bool)
    if misclassified_only:
        keep &= true != pred
    if true_class is not None:
        keep &= true == names.index(true_class)
    if pred_class is not None:
        keep &= pred == names.index(pred_class)
    indices = np.flatnonzero(keep)
    return indices[np.argsort(-conf[indices], kind="stable")][:limit].tolist()


def gallery(result: dict, *, misclassified_only=False, true_class=None, pred_class=None,
            limit: int = 40) -> list[dict]:
    """select_predictions' images as the gallery shows them: {index, true, pred, confidence}, classes by name."""
    names, p = result["class_names"], result["predictions"]
    return [{"index": i, "true": names[p["true"][i]], "pred": names[p["pred"][i]], "confidence": p["confidence"][i]}
            for i in select_predictions(result, misclassified_only=misclassified_only, true_class=true_class,
                                        pred_class=pred_class, limit=limit)]


def confused_pairs_with_mistakes(result: dict, top: int = 5, per_pair: int = 6) -> list[dict]:
    """most_confused_pairs, each with "mistakes": its `per_pair` most confident images (gallery entries)."""
    return [{**pair, "mistakes": gallery(result, true_class=pair["true"], pred_class=pair["pred"], limit=per_pair)}
            for pair in most_confused_pairs(result, top)]


def eval_paths(run_dir: Path) -> list[Path]:
    """Where a run's evaluations are stored, the one to write first: eval.json in the run, except for a model
    inside the installed package (the shipped default), whose evaluations go to the user's cache folder (the
    package may be read-only, and a tracked file must not change); its shipped eval.json is still read."""
    run_dir = Path(run_dir)
    package = Path(__file__).resolve().parent
    if run_dir.resolve() == DEFAULT_RUN.resolve() or package in run_dir.resolve().parents:
        key = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:16]
        return [datasets.cache_dir() / "evaluations" / f"{key}.json", run_dir / "eval.json"]
    return [run_dir / "eval.json"]


def store_eval(run_dir: Path, result: dict) -> None:
    path = eval_paths(run_dir)[0]
    stored = read_json(path, {})
    stored = stored if isinstance(stored, dict) else {}
    stored[f"{result['source']}:{result['split']}"] = result
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, stored)


def model_fingerprint(path: Path) -> str:
    """The SHA-256 of a model file: what a stored evaluation describes. Its content, not its modification time, which
    a git checkout or a copy resets."""
    with open_regular(path, follow_links=True) as f:  # a .keras file a user gave may be a link; a hash reads no secret
        return hashlib.file_digest(f, "sha256").hexdigest()


def data_fingerprint(x, y, class_names) -> str:
    """The SHA-256 of the evaluated images, labels and class names: a stored evaluation describes these too. Keyed by
    the source's path alone, a folder whose images or classes had since changed got the old figures back."""
    digest = hashlib.sha256(repr(tuple(class_names)).encode("utf-8", "backslashreplace"))
    for array in (x, y):
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _number(value, low: float = 0.0, high: float = math.inf) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high


def _counts(values, length: int, high: float = math.inf) -> bool:
    return isinstance(values, list) and len(values) == length and all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= high for v in values)


def _usable(result, source: str, split: str) -> bool:
    """Whether a stored evaluation is one that metrics_from_probabilities could have made for this source and split:
    every field the pages and the CLI read, with its type and range (class indices within the class names,
    fractions within [0, 1], a confusion matrix that counts the n predictions). A torn, edited or hostile eval.json
    is then evaluated again instead of trusted: its source, for one, names the images the page would show."""
    try:
        names, cm, predictions, n = (result["class_names"], result["confusion_matrix"], result["predictions"],
                                     result["n"])
        k = len(names)
        return (result["source"] == source and result["split"] == split
                and isinstance(result.get("tta", "off"), (str, bool))
                and isinstance(n, int) and not isinstance(n, bool) and n >= 0
                and 2 <= k <= MAX_CLASSES and all(isinstance(name, str) and 0 < len(name) <= MAX_CLASS_NAME_CHARS
                                                           for name in names)
                and all(_number(result[key], high=1.0) for key in ("accuracy", "top3_accuracy"))
                and _number(result["loss"])
                and isinstance(cm, list) and len(cm) == k and all(_counts(row, k, n) for row in cm)
                and sum(map(sum, cm)) == n
                and isinstance(result["per_class"], list) and len(result["per_class"]) == k
                and all(isinstance(row, dict) and row.get("class") == name and _counts([row.get("support")], 1, n)
                        and all(_number(row.get(key), high=1.0) for key in ("precision", "recall", "f1"))
                        for row, name in zip(result["per_class"], names))
                and isinstance(predictions, dict)
                and all(_counts(predictions[key], n, k - 1) for key in ("true", "pred"))
                and isinstance(predictions["confidence"], list) and len(predictions["confidence"]) == n
                and all(_number(c, high=1.0) for c in predictions["confidence"]))
    except (KeyError, TypeError):
        return False


def load_eval(run_dir: Path, source: str, split: str, data_sha256: str | None = None) -> dict | None:
    """A stored evaluation of this source and split (_usable), if it describes the model file that is there now
    (None where that file cannot be read) and, given data_sha256, these images (data_fingerprint), with the
    test-time augmentation its run's config names now."""
    model = Path(run_dir) / "model.keras"
    fingerprint = None
    for path in eval_paths(run_dir):
        stored = read_json(path, {}, max_bytes=64 * 2**20)
        result = stored.get(f"{source}:{split}") if isinstance(stored, dict) else None
        if _usable(result, source, split):
            try:
                fingerprint = fingerprint or model_fingerprint(model)
            except OSError:
                return None
            if result.get("model_sha256") == fingerprint and data_sha256 in (None, result.get("data_sha256")) \
                    and tta_mode(result.get("tta")) == tta_for(run_dir):
                return result
    return None


def match_classes(y: np.ndarray, data_names, run_dir: Path | None) -> tuple[np.ndarray, tuple]:
    """(the labels as the model's class indices, the model's class names in its order). A model whose run records
    its classes' names is matched to the data by name: the same classes in another order are relabelled, and other
    classes are refused, naming them. By position, a folder naming 'plane' for 'airplane' had scored the default
    model 19% instead of 92%, without a word (the sixth attack). A model with no recorded names (a bare .keras file)
    is matched by position, once its number of classes is checked."""
    recorded = runs.read_config(run_dir).get("class_names") if run_dir is not None else None
    data_names = tuple(data_names)
    if not isinstance(recorded, list) or not all(isinstance(n, str) for n in recorded) \
            or len(recorded) != len(data_names) or tuple(recorded) == data_names:
        return y, data_names  # a differing count is the class-count check's to refuse
    if len(set(recorded)) == len(recorded) and sorted(recorded) == sorted(data_names):
        index = {name: i for i, name in enumerate(recorded)}
        return np.array([index[name] for name in data_names])[np.asarray(y, dtype=np.int64)], tuple(recorded)
    unknown = [shown(name)[:40] for name in data_names if name not in recorded]
    raise ValueError(f"This data source's classes are not the ones the model was trained on: "
                     f"{', '.join(unknown[:3]) + (', …' if len(unknown) > 3 else '')} "
                     f"{'is' if len(unknown) == 1 else 'are'} not among the model's "
                     f"({', '.join(shown(n)[:40] for n in recorded[:10])}{', …' if len(recorded) > 10 else ''}). "
                     "Name the class folders as the model's classes, or evaluate a model trained on this data.")


def evaluate_model(model_ref: str, split: str = "test", source: str | None = None, runs_dir=None,
                   progress=None, log=None) -> dict:
    """Evaluates a model (run id, run directory, .keras file or 'default') on a split of a data source, reusing
    the stored result for the same model file, source and split."""
    model_path, run_dir = resolve_model(model_ref, runs_dir)
    dataset = datasets.load_data(source or None, log=log)
    x, y, used_split = dataset.split(split)
    if not len(x):
        raise datasets.DataError(f"The {used_split} split of this data source has no images to evaluate.")
    y, class_names = match_classes(y, dataset.class_names, run_dir)
    data_sha256 = data_fingerprint(x, y, class_names)
    if run_dir is not None:
        cached = load_eval(run_dir, dataset.source, used_split, data_sha256)
        if cached:
            return cached
    model = load_model(model_path)
    if model.output_shape[-1] != dataset.num_classes:  # named as the pages name a source, never by a server path
        raise ValueError(f"The model predicts {model.output_shape[-1]} classes but the data source "
                         f"{Path(dataset.source).name} has {dataset.num_classes}.")
    result = evaluate_arrays(model, x, y, class_names, used_split, dataset.source, progress, tta=tta_for(run_dir))
    result["model_sha256"] = model_fingerprint(model_path)
    result["data_sha256"] = data_sha256
    if run_dir is not None:
        try:
            store_eval(run_dir, result)
        except OSError:
            pass  # a read-only folder: the result is still returned
    return result
