"""AppTest of the Evaluate page on a tiny model trained on the embedded sample (tests/conftest.py)."""

import helpers
import pytest
from conftest import TINY_RUN_ID

from cifar_core import evaluate, models, runs
from cifar_core.data import CIFAR10_CLASSES

EVALUATE = "pages/evaluate.py"


def evaluated(open_app, split="test", source="sample"):
    at = open_app(EVALUATE, eval_model=TINY_RUN_ID)
    assert at.selectbox(key="eval_model").value == TINY_RUN_ID
    at.selectbox(key="eval_source").set_value(source)
    at.radio(key="eval_split").set_value(split)
    at.button(key="eval_go").click().run()
    assert not at.exception, at.exception
    return at


def charts(at):
    return {chart.key for chart in at.get("plotly_chart")}


def gallery_images(at):
    return [image for image in at.image if not any(image.captions)]


def pair_images(at):
    return [image for image in at.image if any(image.captions)]


def test_evaluation_shows_metrics_confusion_matrix_and_gallery(open_app, runs_with_model):
    (runs_with_model / TINY_RUN_ID / "eval.json").unlink()  # evaluate for real (training stored its own result)
    at = evaluated(open_app, split="test")
    assert (runs_with_model / TINY_RUN_ID / "eval.json").exists()
    assert {"cm_chart", "per_class_chart"} <= charts(at)
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) >= {"Accuracy", "Loss", "Top-3 accuracy", "Images (test)"}
    assert metrics["Images (test)"] == "1,000"  # the sample's own test split, never trained on
    assert not any("no test split" in info.value for info in at.info)
    assert any(c.value == "Evaluated on the test split of the embedded sample: 1,000 images." for c in at.caption)
    per_class = at.dataframe[0].value
    assert list(per_class["class"]) == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                        "ship", "truck"]
    stored = evaluate.load_eval(runs_with_model / TINY_RUN_ID, "sample", "test")
    assert per_class["recall"].tolist() == pytest.approx([100 * r["recall"] for r in stored["per_class"]])
    assert len(gallery_images(at)) == 40  # the gallery's default size
    captions = [m.value for m in at.markdown if m.value.startswith((":green[", ":red["))]
    assert len(captions) == 40 and all("→" in c for c in captions)
    assert "40 of the 1,000 matching images, the most confident first." in [c.value for c in at.caption]
    at.checkbox(key="gal_wrong").check()
    at.selectbox(key="gal_true").set_value("cat")
    at.selectbox(key="gal_pred").set_value("cat").run()  # filters that no image can match: said why
    assert "No image matches: a misclassified image is never predicted as its own class." in [
        c.value for c in at.caption] and not gallery_images(at)
    at.checkbox(key="gal_wrong").uncheck()
    at.selectbox(key="gal_true").set_value("(any)")
    at.selectbox(key="gal_pred").set_value("(any)").run()
    # Row-normalised matrix: the same chart, other numbers; the evaluation comes from st.cache_data this time.
    at.toggle(key="cm_normalize").set_value(True).run()
    assert not at.exception and "cm_chart" in charts(at)
    assert {m.label: m.value for m in at.metric} == metrics


@pytest.mark.usefixtures("app_env")
def test_the_shipped_model_reports_its_stored_tta_evaluation(open_app):
    # the default run ships its evaluation of the sample's validation split, made with its mirror-shift TTA
    stored = evaluate.load_eval(models.DEFAULT_RUN, "sample", "val")
    assert stored and stored["tta"] == "mirror-shift"
    at = open_app(EVALUATE, eval_model="default")
    at.selectbox(key="eval_source").set_value("sample")
    at.radio(key="eval_split").set_value("val")
    at.button(key="eval_go").click().run()
    assert not at.exception, at.exception
    assert {m.label: m.value for m in at.metric}["Accuracy"] == f"{stored['accuracy']:.1%}"
    assert any("mirror image" in c.value for c in at.caption)


@pytest.mark.usefixtures("runs_with_model")
def test_gallery_filters_and_a_confusion_matrix_click(open_app):
    at = evaluated(open_app, split="val")
    assert not any("no test split" in info.value for info in at.info)
    at.checkbox(key="gal_wrong").check().run()
    captions = [m.value for m in at.markdown if m.value.startswith((":green[", ":red["))]
    assert captions and all(c.startswith(":red[") for c in captions)
    # A click on a cell (true cat, predicted dog) sets both class filters.
    at.session_state["cm_chart"] = {"selection": {"points": [{"x": "dog", "y": "cat"}], "point_indices": [],
                                                  "box": [], "lasso": []}}
    at.run()
    assert not at.exception and not at.warning, (at.exception, at.warning)
    assert at.selectbox(key="gal_true").value == "cat" and at.selectbox(key="gal_pred").value == "dog"
    captions = [m.value for m in at.markdown if m.value.startswith((":green[", ":red["))]
    assert all(c.startswith(":red[cat → dog") for c in captions)
    # The selectboxes choose the pair as well; a diagonal pair lists correct predictions in green.
    at.checkbox(key="gal_wrong").uncheck()
    at.selectbox(key="gal_true").set_value("ship")
    at.selectbox(key="gal_pred").set_value("ship").run()
    captions = [m.value for m in at.markdown if m.value.startswith((":green[", ":red["))]
    assert all(c.startswith(":green[ship → ship") for c in captions)


@pytest.mark.usefixtures("runs_with_model")
def test_most_confused_pairs_with_their_most_confident_mistakes(open_app):
    at = evaluated(open_app, split="val")
    result = evaluate.evaluate_model(TINY_RUN_ID, "val", "sample")  # the run's stored evaluation, as the page's
    pairs = evaluate.most_confused_pairs(result, top=5)
    assert len(pairs) == 5  # a one-epoch model makes plenty of mistakes
    headings = [m.value for m in at.markdown if "→" in m.value and m.value.startswith("**")]
    assert headings == [f"**{p['true']} → {p['pred']}** ({p['count']} {'image' if p['count'] == 1 else 'images'}), "
                        "its most confident mistakes:" for p in pairs]
    # Each pair's mistakes, most confident first, at most 6, each captioned with its confidence and wrong class.
    confidence = result["predictions"]["confidence"]
    expected = [f"{confidence[i]:.0%} {p['pred']}" for p in pairs
                for i in evaluate.select_predictions(result, true_class=p["true"], pred_class=p["pred"], limit=6)]
    assert [image.captions[0] for image in pair_images(at)] == expected
    assert len(expected) == sum(min(6, p["count"]) for p in pairs)
    # A pair's button filters the gallery to that pair's mistakes.
    at.button(key="pair_1").click().run()
    assert not at.exception and not at.warning, (at.exception, at.warning)
    assert at.selectbox(key="gal_true").value == pairs[1]["true"]
    assert at.selectbox(key="gal_pred").value == pairs[1]["pred"] and at.checkbox(key="gal_wrong").value
    captions = [m.value for m in at.markdown if m.value.startswith((":green[", ":red["))]
    assert len(captions) == min(40, pairs[1]["count"])
    assert all(c.startswith(f":red[{pairs[1]['true']} → {pairs[1]['pred']} (") for c in captions)


@pytest.mark.usefixtures("runs_with_model")
def test_a_broken_dataset_is_one_sentence_without_a_bar_or_a_path(open_app, monkeypatch, tmp_path):
    root = tmp_path / "data"
    for name in ("cat", "dog"):
        (root / "broken" / "train" / name).mkdir(parents=True)  # class folders without images
    monkeypatch.setenv("CIFAR_DATA_ROOTS", str(root))
    at = evaluated(open_app, source="data/broken")
    assert len(at.error) == 1 and "hold no images" in at.error[0].value
    assert str(tmp_path) not in at.error[0].value and "--" not in at.error[0].value
    assert not at.get("progress")  # no "Predicting…" bar left above the error
    assert "cm_chart" not in charts(at)
    # an engine's message naming the source by its path (as the command line may): the page shows its name
    (root / "batches").mkdir()
    for name, blob in helpers.official_batches()[2].items():  # CIFAR-10's own format, of a few images
        (root / "batches" / name).write_bytes(blob)
    at = evaluated(open_app, source="data/batches")
    assert len(at.error) == 1 and str(tmp_path) not in at.error[0].value
    assert helpers.plain(at.error[0].value).startswith("The source 'batches' has only ")


@pytest.mark.usefixtures("runs_with_model")
def test_the_result_and_its_choices_survive_a_visit_to_another_page(open_app):
    at = evaluated(open_app, split="val")
    metrics = {m.label: m.value for m in at.metric}
    at.selectbox(key="gal_true").set_value("cat").run()
    at.switch_page("pages/home.py").run()
    at.switch_page(EVALUATE).run()
    assert at.selectbox(key="eval_model").value == TINY_RUN_ID and at.radio(key="eval_split").value == "val"
    assert {m.label: m.value for m in at.metric} == metrics and at.selectbox(key="gal_true").value == "cat"
    # another evaluation starts unfiltered: a pair set for one had left the next one's gallery empty
    at.radio(key="eval_split").set_value("test")
    at.button(key="eval_go").click().run()
    assert at.selectbox(key="gal_true").value == "(any)" and len(gallery_images(at)) == 40


@pytest.mark.usefixtures("app_env", "without_default_model")
def test_without_any_model_the_page_says_how_to_get_one(open_app):
    at = open_app(EVALUATE)
    assert any("Train page" in info.value for info in at.info)
    assert not at.main.selectbox
    assert any("default" in c.value for c in at.caption)  # the shipped model is missing, and the page says so


def test_the_pages_data_source_follows_the_sidebars_until_chosen_on_the_page(open_app, monkeypatch, tmp_path):
    # Once drawn, the page's picker had kept its own choice: the sidebar said the dataset folder while the page
    # evaluated the sample.
    root = tmp_path / "data"
    for name in ("cat", "dog"):
        (root / "mine" / "train" / name).mkdir(parents=True)
    monkeypatch.setenv("CIFAR_DATA_ROOTS", str(root))
    at = open_app("pages/evaluate.py")
    assert at.selectbox(key="eval_source").value == "sample"
    at.sidebar.selectbox(key="data_source").set_value("data/mine").run()
    assert at.selectbox(key="eval_source").value == "data/mine"
    at.selectbox(key="eval_source").set_value("sample").run()  # chosen on the page: kept
    assert at.selectbox(key="eval_source").value == "sample"
    at.run()
    assert at.selectbox(key="eval_source").value == "sample"


def test_an_engine_error_is_shown_without_server_paths_and_a_vanished_file_in_words(monkeypatch, tmp_path):
    import errno

    import ui

    monkeypatch.setenv("CIFAR_RUNS_DIR", str(tmp_path / "runs"))
    # a run deleted from another session while this page loaded its model: not "[Errno 2] ... '/srv/...'"
    gone = FileNotFoundError(errno.ENOENT, "No such file or directory", str(tmp_path / "runs" / "r1" / "model.keras"))
    assert helpers.plain(ui.problem(gone)) == ("This page's model.keras is no longer there: its run may have been "
                                               "deleted or renamed meanwhile. Choose again.")
    said = helpers.plain(ui.problem(ValueError(f"The source '{tmp_path / 'runs' / 'r1'}' has only 3 images.")))
    assert said == "The source 'r1' has only 3 images." and str(tmp_path) not in said


@pytest.mark.usefixtures("runs_with_model")
def test_images_added_to_a_folder_are_evaluated_when_asked_again(open_app, monkeypatch, tmp_path):
    # keyed by the source's name alone, the page had shown the folder's old figures for as long as the server ran
    root = tmp_path / "data"
    for split, count in (("train", 2), ("test", 1)):
        for c, name in enumerate(CIFAR10_CLASSES):
            (root / "pets" / split / name).mkdir(parents=True)
            for i in range(count):
                image = helpers.image_bytes(helpers.solid((20 * c, 10 * i, 99)))
                (root / "pets" / split / name / f"{i}.png").write_bytes(image)
    monkeypatch.setenv("CIFAR_DATA_ROOTS", str(root))
    at = evaluated(open_app, source="data/pets")
    assert {m.label: m.value for m in at.metric}["Images (test)"] == "10"
    (root / "pets" / "test" / "cat" / "1.png").write_bytes((root / "pets" / "test" / "cat" / "0.png").read_bytes())
    at.button(key="eval_go").click().run()
    assert not at.exception and {m.label: m.value for m in at.metric}["Images (test)"] == "11"


@pytest.mark.usefixtures("runs_with_model")
def test_the_model_chosen_on_one_page_is_the_one_the_others_show(open_app):
    # a run evaluated, then Classify and Layers had opened on the shipped model
    at = evaluated(open_app, split="val")
    at.switch_page("pages/classify.py").run()
    assert at.selectbox(key="cls_model").value == TINY_RUN_ID
    at.switch_page("pages/layers.py").run()
    assert at.selectbox(key="lay_model").value == TINY_RUN_ID
    at.selectbox(key="lay_model").set_value("default").run()  # chosen here: the others follow
    at.switch_page("pages/classify.py").run()
    assert at.selectbox(key="cls_model").value == "default" and not at.exception
    assert not at.warning  # no "value set through Session State and a default" warning: the box passes no index
    at.switch_page(EVALUATE).run()
    assert at.selectbox(key="eval_model").value == "default"


def test_a_chosen_model_deleted_elsewhere_is_named_as_gone_once(open_app, runs_with_model):
    """A run deleted in another tab: the Model box fell back to the shipped model without a word."""
    at = evaluated(open_app, split="val")
    at.switch_page("pages/classify.py").run()
    assert at.selectbox(key="cls_model").value == TINY_RUN_ID and not at.warning
    runs.delete_run(runs_with_model / TINY_RUN_ID)
    at.run()
    assert at.selectbox(key="cls_model").value == "default" and not at.exception
    assert [w.value for w in at.warning] == [  # Markdown, escaped: a run's name may hold a link
        f"The model {TINY_RUN_ID.replace('-', chr(92) + '-')} is gone (its run deleted, or its model file removed, "
        "perhaps in another tab): this page now shows default \\(the shipped model\\)."]
    at.run()
    assert not at.warning  # once: the page goes on with the model it shows
