"""cifar_core.evaluate: every metric against a plain reference computed here, galleries, stored evaluations."""

import json
import math
import os
import shutil

import helpers
import numpy as np
import pytest

from cifar_core import evaluate as E
from cifar_core.data import CIFAR10_CLASSES

NAMES = ("a", "b", "c", "d", "e", "f")


def random_case(seed=0, n=400):
    """Random probabilities over 6 classes; class 'f' (5) is never true and never predicted, class 'e' (4) is never
    true but sometimes predicted."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(6) * 0.7, size=n)
    p[:, 5] = 0.0
    p /= p.sum(axis=1, keepdims=True)
    y = rng.choice(4, size=n)
    assert (p.argmax(axis=1) == 4).any()
    return p.astype(np.float64), y


def reference(p, y):
    """Straight loops, no shared code with cifar_core.evaluate."""
    k = p.shape[1]
    pred = [max(range(k), key=lambda j: row[j]) for row in p]
    cm = [[0] * k for _ in range(k)]
    for t, q in zip(y, pred):
        cm[t][q] += 1
    per_class = []
    for c in range(k):
        tp = cm[c][c]
        predicted = sum(cm[i][c] for i in range(k))
        actual = sum(cm[c])
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append((precision, recall, f1, actual))
    accuracy = sum(t == q for t, q in zip(y, pred)) / len(y)
    top3 = sum(t in sorted(range(k), key=lambda j: -row[j])[:3] for row, t in zip(p, y)) / len(y)
    loss = sum(-math.log(max(row[t], 1e-7)) for row, t in zip(p, y)) / len(y)
    return cm, per_class, accuracy, top3, loss, pred


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_against_reference(seed):
    p, y = random_case(seed)
    cm, per_class, accuracy, top3, loss, pred = reference(p, y)
    result = E.metrics_from_probabilities(p, y, NAMES, "val", "src")
    assert result["confusion_matrix"] == cm
    assert result["n"] == len(y) and result["split"] == "val" and result["source"] == "src"
    assert result["class_names"] == list(NAMES)
    assert result["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert result["top3_accuracy"] == pytest.approx(top3, abs=1e-12)
    assert result["loss"] == pytest.approx(loss, rel=1e-9)
    for row, (precision, recall, f1, support) in zip(result["per_class"], per_class):
        assert row["precision"] == pytest.approx(precision, abs=1e-12)
        assert row["recall"] == pytest.approx(recall, abs=1e-12)
        assert row["f1"] == pytest.approx(f1, abs=1e-12)
        assert row["support"] == support
    assert [row["class"] for row in result["per_class"]] == list(NAMES)
    assert result["predictions"]["true"] == y.tolist() and result["predictions"]["pred"] == pred
    assert result["predictions"]["confidence"] == pytest.approx(p.max(axis=1), abs=1e-5)
    assert 0 < result["top3_accuracy"] < 1 and result["accuracy"] < result["top3_accuracy"]


def test_zero_division_classes_are_zero():
    p, y = random_case()
    result = E.metrics_from_probabilities(p, y, NAMES, "val")
    never = result["per_class"][5]
    assert (never["precision"], never["recall"], never["f1"], never["support"]) == (0.0, 0.0, 0.0, 0)
    predicted_never_true = result["per_class"][4]
    assert predicted_never_true["support"] == 0 and predicted_never_true["precision"] == 0.0
    assert sum(result["confusion_matrix"][i][4] for i in range(6)) > 0


def test_by_hand():
    # three images: a->a (right), a->b (wrong), b->b (right)
    p = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.05, 0.9, 0.05]])
    result = E.metrics_from_probabilities(p, np.array([0, 0, 1]), ("a", "b", "c"), "test")
    assert result["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["loss"] == pytest.approx(-(math.log(0.7) + math.log(0.3) + math.log(0.9)) / 3)
    a, b, c = result["per_class"]
    assert (a["precision"], a["recall"]) == (1.0, 0.5) and a["f1"] == pytest.approx(2 / 3)
    assert (b["precision"], b["recall"]) == (0.5, 1.0) and b["f1"] == pytest.approx(2 / 3)
    assert (c["precision"], c["recall"], c["f1"]) == (0.0, 0.0, 0.0)
    # a zero probability for the true class is clipped to 1e-7, not an infinite loss
    zero = E.metrics_from_probabilities(np.array([[1.0, 0.0]]), np.array([1]), ("a", "b"), "val")
    assert zero["loss"] == pytest.approx(-math.log(1e-7))


def test_empty_split():
    result = E.metrics_from_probabilities(np.zeros((0, 3)), np.zeros(0, int), ("a", "b", "c"), "val")
    assert (result["n"], result["accuracy"], result["loss"], result["top3_accuracy"]) == (0, 0.0, 0.0, 0.0)


def test_confusion_matrix_counts_repeats():
    cm = E.confusion_matrix(np.array([0, 0, 0, 2]), np.array([1, 1, 0, 2]), 3)
    assert cm.tolist() == [[1, 2, 0], [0, 0, 0], [0, 0, 1]]


def test_most_confused_pairs():
    result = {"class_names": ["a", "b", "c"],
              "confusion_matrix": [[50, 3, 7], [1, 40, 0], [9, 2, 30]]}
    assert E.most_confused_pairs(result, top=3) == [
        {"true": "c", "pred": "a", "count": 9}, {"true": "a", "pred": "c", "count": 7},
        {"true": "a", "pred": "b", "count": 3}]
    everything = E.most_confused_pairs(result, top=10)
    assert [r["count"] for r in everything] == [9, 7, 3, 2, 1]  # zero cells and the diagonal are left out


GALLERY = {"class_names": ["a", "b", "c"],
           "predictions": {"true": [0, 0, 1, 2, 1, 0, 2],
                           "pred": [0, 1, 1, 0, 0, 1, 2],
                           "confidence": [0.9, 0.8, 0.3, 0.95, 0.6, 0.85, 0.5]}}


def test_select_predictions():
    # all, most confident first
    assert E.select_predictions(GALLERY) == [3, 0, 5, 1, 4, 6, 2]
    # misclassified: 1 (a->b, .8), 3 (c->a, .95), 4 (b->a, .6), 5 (a->b, .85)
    assert E.select_predictions(GALLERY, misclassified_only=True) == [3, 5, 1, 4]
    assert E.select_predictions(GALLERY, true_class="a") == [0, 5, 1]
    assert E.select_predictions(GALLERY, pred_class="a") == [3, 0, 4]
    assert E.select_predictions(GALLERY, misclassified_only=True, true_class="a", pred_class="b") == [5, 1]
    assert E.select_predictions(GALLERY, misclassified_only=True, limit=2) == [3, 5]
    assert E.select_predictions(GALLERY, true_class="c", pred_class="b") == []


def test_gallery_names_the_classes_of_the_selected_images():
    assert E.gallery(GALLERY, misclassified_only=True, limit=3) == [
        {"index": 3, "true": "c", "pred": "a", "confidence": 0.95},
        {"index": 5, "true": "a", "pred": "b", "confidence": 0.85},
        {"index": 1, "true": "a", "pred": "b", "confidence": 0.8}]
    assert E.gallery(GALLERY, true_class="b", pred_class="b") == [
        {"index": 2, "true": "b", "pred": "b", "confidence": 0.3}]
    assert E.gallery(GALLERY, true_class="c", pred_class="b") == []


def test_confused_pairs_with_their_most_confident_mistakes():
    result = {**GALLERY, "confusion_matrix": [[1, 2, 0], [1, 1, 0], [1, 0, 1]]}
    assert E.confused_pairs_with_mistakes(result, top=2, per_pair=1) == [
        {"true": "a", "pred": "b", "count": 2,
         "mistakes": [{"index": 5, "true": "a", "pred": "b", "confidence": 0.85}]},
        {"true": "c", "pred": "a", "count": 1,
         "mistakes": [{"index": 3, "true": "c", "pred": "a", "confidence": 0.95}]}]
    assert E.confused_pairs_with_mistakes({**result, "confusion_matrix": [[3, 0, 0], [0, 2, 0], [0, 0, 2]]}) == []


class FakeModel:
    """Probabilities from the first pixel: class = pixel value mod 3."""

    def __init__(self):
        self.batches = []

    def predict_on_batch(self, x):
        assert x.dtype == np.float32
        self.batches.append(len(x))
        out = np.full((len(x), 3), 0.1, np.float32)
        out[np.arange(len(x)), x[:, 0, 0, 0].astype(int) % 3] = 0.8
        return out


def test_evaluate_arrays_in_batches(monkeypatch):
    monkeypatch.setattr(E, "EVAL_BATCH_SIZE", 4)
    x = np.zeros((10, 32, 32, 3), np.uint8)
    x[:, 0, 0, 0] = np.arange(10)
    y = np.arange(10) % 3
    y[0] = 1  # one wrong
    model, progress = FakeModel(), []
    result = E.evaluate_arrays(model, x, y, ("a", "b", "c"), "val", "src", progress.append)
    assert model.batches == [4, 4, 2]
    assert progress == pytest.approx([0.4, 0.8, 1.0])
    assert result["n"] == 10 and result["accuracy"] == pytest.approx(0.9)
    assert result["predictions"]["pred"] == (np.arange(10) % 3).tolist()


# ---------------------------------------------------------------------------------------------------------------
# stored evaluations


@pytest.fixture
def run_copy(tmp_path):
    return shutil.copytree(helpers.tiny_run(), tmp_path / "run")


def test_evaluate_model_stores_and_reuses(run_copy, monkeypatch):
    (run_copy / "eval.json").unlink()
    first = E.evaluate_model(str(run_copy), split="val", source="sample")
    assert first["split"] == "val" and first["n"] == 200 and first["source"] == "sample"
    stored = helpers_read_json(run_copy / "eval.json")
    assert set(stored) == {"sample:val"}

    def no_load(path):
        raise AssertionError("the stored evaluation should have been used")

    monkeypatch.setattr(E, "load_model", no_load)
    again = E.evaluate_model(str(run_copy), split="val", source="sample")
    assert again["accuracy"] == first["accuracy"] and again["confusion_matrix"] == first["confusion_matrix"]

    # a copy or a checkout (a new modification time, the same bytes) keeps it
    model = run_copy / "model.keras"
    st = model.stat()
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert E.load_eval(run_copy, "sample", "val")["accuracy"] == first["accuracy"]
    # another model file makes the stored result stale
    model.write_bytes(model.read_bytes() + b"\0")
    assert E.load_eval(run_copy, "sample", "val") is None
    with pytest.raises(AssertionError, match="stored evaluation"):
        E.evaluate_model(str(run_copy), split="val", source="sample")


def test_a_stored_evaluation_with_another_tta_is_stale(run_copy):
    (run_copy / "eval.json").unlink()
    first = E.evaluate_model(str(run_copy), split="val", source="sample")
    assert first["tta"] == "off" and E.load_eval(run_copy, "sample", "val")
    config = helpers_read_json(run_copy / "config.json")
    config["train"]["tta"] = "mirror-shift"
    (run_copy / "config.json").write_text(json.dumps(config))
    assert E.load_eval(run_copy, "sample", "val") is None
    again = E.evaluate_model(str(run_copy), split="val", source="sample")
    assert again["tta"] == "mirror-shift" and E.load_eval(run_copy, "sample", "val")["tta"] == "mirror-shift"
    config["train"]["tta"] = True  # a run saved before the modes: mirror
    (run_copy / "config.json").write_text(json.dumps(config))
    assert E.load_eval(run_copy, "sample", "val") is None
    assert E.evaluate_model(str(run_copy), split="val", source="sample")["tta"] == "mirror"


def test_evaluate_model_refuses_a_class_count_mismatch(run_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_CORE_CACHE", str(tmp_path / "cache"))
    for name in ("x", "y", "z"):
        (tmp_path / "folder" / name).mkdir(parents=True)
        for i in range(4):
            (tmp_path / "folder" / name / f"{i}.png").write_bytes(helpers.image_bytes(helpers.solid((i, i, i))))
    with pytest.raises(ValueError, match="predicts 10 classes .* has 3"):
        E.evaluate_model(str(run_copy / "model.keras"), split="val", source=str(tmp_path / "folder"))


def helpers_read_json(path):
    import json

    return json.loads(path.read_text())


def test_a_stored_evaluation_of_other_images_under_the_same_source_is_stale(run_copy, tmp_path, decode_cache,
                                                                           monkeypatch):
    # keyed by the source's path alone, a folder whose images had since changed got the old figures back
    folder = tmp_path / "images"

    def fill(shade):
        for c, name in enumerate(CIFAR10_CLASSES):  # the classes the model was trained on (match_classes)
            (folder / "train" / name).mkdir(parents=True, exist_ok=True)
            for i in range(3):
                image = helpers.solid((shade, 20 * c, 50 * i))
                (folder / "train" / name / f"{i}.png").write_bytes(helpers.image_bytes(image))

    loads = []
    load_model = E.load_model
    monkeypatch.setattr(E, "load_model", lambda path: loads.append(path) or load_model(path))
    fill(10)
    first = E.evaluate_model(str(run_copy), split="val", source=str(folder))
    assert E.evaluate_model(str(run_copy), split="val", source=str(folder)) == first and len(loads) == 1
    fill(200)  # the same folder, other images
    again = E.evaluate_model(str(run_copy), split="val", source=str(folder))
    assert len(loads) == 2 and again["data_sha256"] != first["data_sha256"]


def test_the_evaluation_made_at_the_end_of_training_is_reused(run_copy, monkeypatch):
    def no_load(path):
        raise AssertionError("the evaluation stored by training should have been used")

    stored = helpers_read_json(run_copy / "eval.json")
    assert [key.rsplit(":", 1)[-1] for key in stored] == ["test"] and all(r["data_sha256"] for r in stored.values())
    monkeypatch.setattr(E, "load_model", no_load)
    assert E.evaluate_model(str(run_copy), split="test", source="sample")["n"] == next(iter(stored.values()))["n"]


def test_the_data_is_matched_to_the_model_by_class_name(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"class_names": ["cat", "dog", "ship"]}))
    y = np.array([0, 1, 2, 2])
    labels, names = E.match_classes(y, ("cat", "dog", "ship"), run)  # the same order: as they are
    assert labels is y and names == ("cat", "dog", "ship")
    labels, names = E.match_classes(y, ("dog", "ship", "cat"), run)  # another order: relabelled by name
    assert labels.tolist() == [1, 2, 0, 0] and names == ("cat", "dog", "ship")
    with pytest.raises(ValueError, match=r"classes are not the ones the model was trained on: plane is not among "
                                         r"the model's \(cat, dog, ship\)"):
        E.match_classes(y, ("cat", "dog", "plane"), run)
    # no recorded names (a bare .keras file), or another count (the class-count check's): by position
    assert E.match_classes(y, ("a", "b", "c"), None)[0] is y
    assert E.match_classes(y, ("a", "b", "c", "d"), run)[1] == ("a", "b", "c", "d")


def test_a_folder_naming_a_class_otherwise_is_refused_not_scored_by_position(run_copy, tmp_path, decode_cache):
    # 'plane' for 'airplane' sorts last: scored by position the default model had scored 19% for 92%, unsaid
    folder = tmp_path / "images"
    for c, name in enumerate(("plane", *CIFAR10_CLASSES[1:])):
        (folder / "train" / name).mkdir(parents=True)
        (folder / "train" / name / "0.png").write_bytes(helpers.image_bytes(helpers.solid((10, 20 * c, 50))))
    with pytest.raises(ValueError, match="plane is not among the model's"):
        E.evaluate_model(str(run_copy), split="val", source=str(folder))
    # named as a page names it, never by its path
    with pytest.raises(ValueError, match="predicts 10 classes but the data source three has 3") as refused:
        E.evaluate_model(str(run_copy), split="val", source=str(helpers.make_folder(tmp_path / "three")))
    assert str(tmp_path) not in str(refused.value)


def test_a_model_file_the_user_links_to_is_evaluated(run_copy, tmp_path):
    # a link a user gives on the command line is theirs to give: only a run's own files are never read through one
    (tmp_path / "mine.keras").symlink_to(run_copy / "model.keras")
    result = E.evaluate_model(str(tmp_path / "mine.keras"), split="val", source="sample")
    assert result["n"] > 0 and result["model_sha256"] == E.model_fingerprint(run_copy / "model.keras")
