"""AppTest of the Classify page: uploads (good and bad files side by side), sample images, the Grad-CAM heatmap (any
class, any opacity; a plain sentence for a model without convolutions), no model at all."""

import pytest
from conftest import FLAT_RUN_ID, TINY_RUN_ID

from cifar_core import data, images, models, predict

CLASSIFY = "pages/classify.py"


def top_k_charts(at):
    return [chart for chart in at.get("plotly_chart") if (chart.key or "").startswith("top_k_")]


def image_by_caption(at, start):
    found = [image for image in at.image if image.captions and image.captions[0].startswith(start)]
    assert len(found) <= 1
    return found[0] if found else None


def sample_page(open_app, model, index=3):
    at = open_app(CLASSIFY, cls_model=model, cls_mode="sample", cls_sample=index)
    assert at.selectbox(key="cls_model").value == model
    return at


@pytest.mark.usefixtures("runs_with_model")
def test_a_valid_and_an_invalid_upload_give_a_prediction_and_a_sentence(open_app):
    at = open_app(CLASSIFY)
    uploader = at.file_uploader(key="cls_files")
    assert set(uploader.allowed_type) == {f".{e}" for e in images.UPLOAD_EXTENSIONS}  # extensions, no MIME types
    x, _, _ = data.load_sample()
    uploader.set_value([("*cat* <b>1</b>.png", images.encode_png(x[0]), "image/png"),
                        ("broken.jpg", b"this is not an image", "image/jpeg")]).run()
    assert not at.exception, at.exception
    # File names are shown as plain text, never as markdown or HTML.
    assert [t.value for t in at.text] == ["*cat* <b>1</b>.png", "broken.jpg"]
    assert len(top_k_charts(at)) == 1
    assert [e.value for e in at.error] == [
        "This file is not an image in a supported format (PNG, JPEG, WebP, GIF or BMP)."]
    # The original, the enlarged 32x32 input and its Grad-CAM heatmap, for the good file only.
    assert [image.captions[0].split(":")[0] for image in at.image] == [
        "original", "what the model sees (the centre square at 32 × 32)", "Grad-CAM"]


@pytest.mark.usefixtures("app_env")
def test_the_shipped_model_classifies_with_its_mirror_tta(open_app):
    at = sample_page(open_app, "default")
    assert not at.exception, at.exception
    assert any("mirror image" in c.value for c in at.caption)
    assert len(top_k_charts(at)) == 1


@pytest.mark.usefixtures("runs_with_model")
def test_a_model_trained_without_tta_says_nothing_of_it(open_app):
    at = sample_page(open_app, TINY_RUN_ID)
    assert not at.exception and not any("mirror image" in c.value for c in at.caption)


@pytest.mark.usefixtures("runs_with_model")
def test_embedded_sample_images_show_their_true_class(open_app):
    at = open_app(CLASSIFY)
    at.radio(key="cls_mode").set_value("sample").run()
    at.number_input(key="cls_sample").set_value(7).run()
    _, y, names = data.load_sample()
    assert at.text[0].value == f"sample image 7 (true class: {names[y[7]]})"
    assert at.number_input(key="cls_sample").help == ("0 to 1,799: training images; 1,800 to 1,999: validation "
                                                      "images; 2,000 to 2,999: test images, which no run on the "
                                                      "sample trained on.")  # the numbers say which split
    assert not any("True class" in c.value for c in at.caption)  # said once, in the file's name, not twice
    assert len(top_k_charts(at)) == 1 and not at.error
    at.slider(key="cls_k").set_value(5).run()
    assert len(top_k_charts(at)) == 1 and not at.exception


@pytest.mark.usefixtures("app_env", "without_default_model")
def test_without_any_model_the_page_says_how_to_get_one(open_app):
    at = open_app(CLASSIFY)
    assert "Train page" in at.info[0].value
    assert not at.file_uploader


def test_grad_cam_for_the_predicted_class_then_any_class_at_any_opacity(open_app, runs_with_model):
    at = sample_page(open_app, TINY_RUN_ID)
    assert not at.exception and not at.info
    (picker,) = [box for box in at.selectbox if box.key.startswith("cls_cam_0_")]
    names = list(data.CIFAR10_CLASSES)
    x, _, _ = data.load_sample()
    model = models.load_model(runs_with_model / TINY_RUN_ID / "model.keras")
    predicted = predict.classify(model, names, [("x", images.encode_png(x[3]))])[0]["top"][0]["label"]
    assert names[picker.value] == predicted and picker.format_func(picker.value) == f"{predicted} (predicted)"
    heatmap = image_by_caption(at, "Grad-CAM")
    key = ", tinted yellow where it counted most and dimmed where it did not count"  # whatever the image's colours
    assert heatmap.captions[0] == f"Grad-CAM: where the model finds “{predicted}”{key}"  # tiny pools globally
    # Another class: another heatmap, and the caption names it.
    other = (picker.value + 1) % len(names)
    picker.set_value(other).run()
    assert not at.exception, at.exception
    other_heatmap = image_by_caption(at, "Grad-CAM")
    assert other_heatmap.captions[0] == f"Grad-CAM: where the model finds “{names[other]}”{key}"
    # Opacity 0 shows the input alone: the very image of "what the model sees" (both enlarged 6x).
    at.slider(key="cls_opacity").set_value(0.0).run()
    assert image_by_caption(at, "Grad-CAM").value == image_by_caption(at, "what the model sees").value
    at.slider(key="cls_opacity").set_value(1.0).run()
    assert image_by_caption(at, "Grad-CAM").value != image_by_caption(at, "what the model sees").value


@pytest.mark.usefixtures("runs_with_model", "flat_run")
def test_a_model_without_convolutions_says_so_and_still_classifies(open_app):
    at = sample_page(open_app, FLAT_RUN_ID)
    assert not at.exception, at.exception
    assert [info.value for info in at.info] == [
        "This model has no convolution layer, so it has no spatial map to explain; add a Conv2D layer to see where "
        "it looks."]
    assert image_by_caption(at, "Grad-CAM") is None
    assert not [box for box in at.selectbox if box.key.startswith("cls_cam_")]
    assert len(top_k_charts(at)) == 1 and not at.error


@pytest.mark.usefixtures("runs_with_model")
def test_uploads_and_the_model_survive_a_visit_and_the_heatmap_follows_the_model(open_app):
    at = open_app(CLASSIFY, cls_model=TINY_RUN_ID)
    x, _, _ = data.load_sample()
    at.file_uploader(key="cls_files").set_value([("a.png", images.encode_png(x[4]), "image/png")]).run()
    assert [t.value for t in at.text] == ["a.png"]
    at.switch_page("pages/home.py").run()
    at.switch_page(CLASSIFY).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="cls_model").value == TINY_RUN_ID
    assert [t.value for t in at.text] == ["a.png"] and len(top_k_charts(at)) == 1  # still there
    # Another model: the picker starts from that model's own top class, marked "(predicted)".
    for ref in (TINY_RUN_ID, "default", TINY_RUN_ID):
        at.selectbox(key="cls_model").set_value(ref).run()
        path, run_dir = models.resolve_model(ref)
        model = models.load_model(path)
        names = models.class_names_for(run_dir, model.output_shape[-1])
        top = predict.classify(model, names, [("a.png", images.encode_png(x[4]))], 1, models.tta_for(run_dir))
        predicted = top[0]["top"][0]["label"]
        (picker,) = [s for s in at.selectbox if s.label == "Heatmap for class"]
        assert picker.options[picker.index] == f"{predicted} (predicted)", ref
    at.button(key="cls_files_clear").click().run()
    assert not at.text
