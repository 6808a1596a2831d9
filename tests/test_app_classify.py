"""AppTest of the Classify page: uploads (good and bad files side by side), sample images, no model at all."""

import pytest

from cifar_core import data, predict

CLASSIFY = "pages/classify.py"


def top_k_charts(at):
    return [chart for chart in at.get("plotly_chart") if (chart.key or "").startswith("top_k_")]


@pytest.mark.usefixtures("runs_with_model")
def test_a_valid_and_an_invalid_upload_give_a_prediction_and_a_sentence(open_app):
    at = open_app(CLASSIFY)
    uploader = at.file_uploader(key="cls_files")
    assert set(uploader.allowed_type) == {f".{e}" for e in predict.UPLOAD_EXTENSIONS}  # extensions, no MIME types
    x, _, _ = data.load_sample()
    uploader.set_value([("*cat* <b>1</b>.png", data.encode_png(x[0]), "image/png"),
                        ("broken.jpg", b"this is not an image", "image/jpeg")]).run()
    assert not at.exception, at.exception
    # File names are shown as plain text, never as markdown or HTML.
    assert [t.value for t in at.text] == ["*cat* <b>1</b>.png", "broken.jpg"]
    assert len(top_k_charts(at)) == 1
    assert [e.value for e in at.error] == [
        "This file is not an image in a supported format (PNG, JPEG, WebP, GIF or BMP)."]
    assert len(at.image) == 2  # the original and the enlarged 32x32 input of the good file


@pytest.mark.usefixtures("runs_with_model")
def test_embedded_sample_images_show_their_true_class(open_app):
    at = open_app(CLASSIFY)
    at.radio(key="cls_mode").set_value("sample").run()
    at.number_input(key="cls_sample").set_value(7).run()
    _, y, names = data.load_sample()
    assert any(c.value == f"True class: {names[y[7]]}" for c in at.caption)
    assert at.text[0].value == f"sample image 7 (true class: {names[y[7]]})"
    assert len(top_k_charts(at)) == 1 and not at.error
    at.slider(key="cls_k").set_value(5).run()
    assert len(top_k_charts(at)) == 1 and not at.exception


@pytest.mark.usefixtures("app_env", "without_default_model")
def test_without_any_model_the_page_says_how_to_get_one(open_app):
    at = open_app(CLASSIFY)
    assert "Train page" in at.info[0].value
    assert not at.file_uploader
