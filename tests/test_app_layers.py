"""AppTest of the Layers page: each convolution's feature maps and the first layer's filters for a sample image or an
upload, a plain sentence for a model without convolutions, no model at all."""

import os
import re

import helpers
import pytest
from conftest import FLAT_RUN_ID, TINY_RUN_ID

from cifar_core import charts, data, images

LAYERS = "pages/layers.py"


@pytest.fixture
def drawn(monkeypatch):
    """What the page asks charts to draw: [(kind, input shape, limit or None, output shape)]."""
    calls = []
    feature_map_grid, filter_grid = charts.feature_map_grid, charts.filter_grid

    def maps_spy(maps, limit=32, **kwargs):
        grid = feature_map_grid(maps, limit, **kwargs)
        calls.append(("maps", maps.shape, limit, grid.shape))
        return grid

    def filters_spy(filters, **kwargs):
        grid = filter_grid(filters, **kwargs)
        calls.append(("filters", filters.shape, None, grid.shape))
        return grid

    monkeypatch.setattr(charts, "feature_map_grid", maps_spy)
    monkeypatch.setattr(charts, "filter_grid", filters_spy)
    return calls


def test_class_names_in_captions_are_text_not_markdown(open_app, runs_with_model):
    from cifar_core import runs

    names = [f"[class {i}](https://example.com/{i}) ![p](https://example.com/p.png)" for i in range(10)]
    runs.write_config(runs_with_model / TINY_RUN_ID, class_names=names)
    model = runs_with_model / TINY_RUN_ID / "model.keras"  # a new version: the page caches names with the model
    os.utime(model, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns + 10**9))
    at = open_app(LAYERS, lay_model=TINY_RUN_ID)
    caption = at.image[0].captions[0]
    assert "the model says \\[class " in caption and "](" not in caption.replace("\\]\\(", "")


@pytest.mark.usefixtures("runs_with_model")
def test_the_model_and_the_image_survive_a_visit_to_another_page(open_app):
    at = open_app(LAYERS)
    at.selectbox(key="lay_model").set_value(TINY_RUN_ID).run()
    at.number_input(key="lay_sample").set_value(7).run()
    assert "validation images" in at.number_input(key="lay_sample").help  # which split the number is of, as Classify
    at.slider(key="lay_limit").set_value(16).run()
    at.switch_page("pages/home.py").run()
    at.switch_page(LAYERS).run()
    assert not at.exception, at.exception
    assert (at.selectbox(key="lay_model").value, at.number_input(key="lay_sample").value,
            at.slider(key="lay_limit").value) == (TINY_RUN_ID, 7, 16)


@pytest.mark.usefixtures("runs_with_model")
def test_feature_map_grids_and_filters_of_the_tiny_model(open_app, drawn):
    at = open_app(LAYERS, lay_model=TINY_RUN_ID)
    assert at.selectbox(key="lay_model").value == TINY_RUN_ID
    assert at.radio(key="lay_mode").value == "sample"  # something to look at without an upload
    _, y, names = data.load_sample()
    assert any(c.value == f"True class: {names[y[0]]}" for c in at.caption)
    # tiny: Conv2D(16, 3) -> MaxPooling2D -> Conv2D(32, 3) -> MaxPooling2D -> GlobalMaxPooling2D
    headings = [h.value for h in at.subheader]
    assert headings[0] == "1\\. Conv2D: its filters"
    # named as the Build page numbers the stack
    assert headings[1:] == ["1\\. Conv2D: output 32 × 32 × 16", "3\\. Conv2D: output 16 × 16 × 32"]
    assert at.image[0].captions[0].startswith("the 32 × 32 input; the model says ")
    assert len(at.image) == 4  # the input, the filters, two grids of maps
    # 16 filters of 3 x 3 enlarged 11x, 16 to a row, 2 pixels apart (11 // 4); 16 maps of 32 x 32 at 2x and 32 of
    # 16 x 16 at 3x, 8 to a row.
    assert drawn == [("filters", (16, 3, 3, 3), None, (33, 16 * 33 + 15 * 2, 3)),
                     ("maps", (16, 32, 32), 32, (2 * 64 + 1, 8 * 64 + 7, 3)),
                     ("maps", (32, 16, 16), 32, (4 * 48 + 3, 8 * 48 + 7, 3))]
    captions = [c.value for c in at.caption]
    assert any(c.startswith("All 16 maps, highest mean activation first") for c in captions)
    assert any(c.startswith("All 32 maps") for c in captions)
    # Fewer maps per layer: the most active 8 of each.
    drawn.clear()
    at.slider(key="lay_limit").set_value(8).run()
    assert not at.exception, at.exception
    assert [(call[2], call[3][0]) for call in drawn if call[0] == "maps"] == [(8, 64), (8, 48)]  # one row each
    assert any(c.value.startswith("The 8 most active of 32 maps") for c in at.caption)
    # Another sample image: other maps.
    before = [image.value for image in at.image]
    at.number_input(key="lay_sample").set_value(5).run()
    after = [image.value for image in at.image]
    assert after[0] != before[0] and after[1] == before[1] and after[2:] != before[2:]  # the filters stay


@pytest.mark.usefixtures("runs_with_model")
def test_an_uploaded_image_or_a_sentence_for_a_bad_file(open_app):
    at = open_app(LAYERS, lay_model=TINY_RUN_ID)
    at.radio(key="lay_mode").set_value("upload").run()
    assert not at.subheader and any(c.value.startswith("Upload an image") for c in at.caption)
    at.file_uploader(key="lay_file").set_value(("notes.png", b"not an image", "image/png")).run()
    assert not at.exception, at.exception
    assert [helpers.plain(e.value) for e in at.error] == [
        "This file is not an image in a supported format (PNG, JPEG, WebP, GIF or BMP)."]
    assert not at.subheader
    x, _, _ = data.load_sample()
    at.file_uploader(key="lay_file").set_value(("horse.png", images.encode_png(x[9]), "image/png")).run()
    assert not at.exception and not at.error
    assert len(at.subheader) == 3 and len(at.image) == 4
    assert not any("fewer than" in c.value for c in at.caption)
    at.file_uploader(key="lay_file").set_value(("dot.png", images.encode_png(x[9][:1, :1]), "image/png")).run()
    assert not at.exception and any("1 × 1 pixels, fewer than the 32 × 32" in c.value for c in at.caption)


@pytest.mark.usefixtures("runs_with_model", "flat_run")
def test_a_model_without_convolutions_says_so(open_app):
    at = open_app(LAYERS, lay_model=FLAT_RUN_ID)
    assert not at.exception, at.exception
    assert [info.value for info in at.info] == [
        "This model has no convolution layer, so it has no feature maps or filters to show; add a Conv2D layer on "
        "the Build page to see them."]
    assert not at.subheader and len(at.image) == 1  # the input alone


@pytest.mark.usefixtures("app_env", "without_default_model")
def test_without_any_model_the_page_says_how_to_get_one(open_app):
    at = open_app(LAYERS)
    assert "Train page" in at.info[0].value
    assert not at.main.selectbox


@pytest.mark.usefixtures("app_env")
def test_the_shipped_model(open_app, drawn):
    at = open_app(LAYERS, lay_model="default")
    assert not at.exception, at.exception
    # fast: the 24 2x2 whitening filters first, then six convolutions of 64 to 256 filters, from 31 x 31 to 3 x 3.
    headings = [re.sub(r"^[\w\\. ]+: ", "", h.value) for h in at.subheader]
    assert headings == ["its filters", "output 31 × 31 × 64", "output 15 × 15 × 64", "output 15 × 15 × 256",
                        "output 7 × 7 × 256", "output 7 × 7 × 256", "output 3 × 3 × 256"]
    assert [call[1][0] for call in drawn] == [24, 64, 64, 256, 256, 256, 256]
    # the first filters are the whitening layer's, and the page says so (they had read as a first convolution's)
    assert at.subheader[0].value == "1\\. PatchWhitening: its filters"
    assert "24 filters of 2 × 2 pixels, fixed before training to whiten the images' patches (not learned)" in \
        " ".join(c.value for c in at.caption)
