"""AppTest of the Build page: presets, the layer editor, validity shown in place, Keras code and spec JSON."""

import json
import os
import time

import helpers
import pytest

from cifar_core import presets, shapes, spec_io
from cifar_core import spec as specs

pytestmark = pytest.mark.usefixtures("app_env")

BUILD = "pages/build.py"


def load(at, choice):
    """Picking a preset loads it (no button needed)."""
    return at.selectbox(key="start_from").set_value(choice).run()


def diagram(at) -> str:
    return at.get("graphviz_chart")[0].proto.spec


def total_params(at) -> int:
    table = at.dataframe[0].value  # the only table on the page
    assert table.iloc[-1]["layer"] == "Total"
    return int(table.iloc[-1]["params"])


def errors(at) -> list[str]:
    return [e.value for e in at.error]


def layer_box(at, key):
    """The bordered box (one per layer) holding the widget `key`."""
    def walk(node, chain):
        for child in getattr(node, "children", {}).values():
            if getattr(child, "key", None) == key:
                return chain
            found = walk(child, chain + [child])
            if found:
                return found
        return None

    def bordered(node):
        proto = getattr(node, "proto", None)
        return getattr(node, "type", "") == "flex_container" and proto.flex_container.border

    return next(node for node in reversed(walk(at.main, [at.main])) if bordered(node))


def test_every_preset_loads_with_its_parameter_count(open_app):
    at = open_app(BUILD)
    for name, preset in presets.PRESETS.items():
        load(at, name)
        assert not at.exception and not errors(at)
        assert total_params(at) == shapes.summary(preset.spec)["params"], name
        assert at.session_state["spec"] == preset.spec
        assert at.session_state["spec_valid"] is True
    load(at, "report-2-2")
    assert total_params(at) == 15_579_550
    assert at.metric[0].value == "15.58 M" and at.metric[0].help == "15,579,550"
    source = at.code[0].value
    assert source.startswith("import keras") and "layers.Conv2D(1024" in source
    assert at.download_button(key="download_spec")


def test_a_kernel_too_large_is_reported_at_its_layer_and_train_refuses(open_app):
    at = open_app(BUILD)
    load(at, "report-2-1")
    at.number_input(key="layer_6_kernel_size").set_value(7).run()  # layer 7: a 7x7 valid kernel on a 5x5 input
    assert errors(at) == ["Layer 7 (Conv2D): a 7 × 7 kernel with padding 'valid' does not fit its 5 × 5 input; "
                          "use a smaller kernel_size or padding 'same'."]
    box = layer_box(at, "layer_6_kernel_size")
    assert [e.value for e in box.error] == errors(at)  # shown in place, inside layer 7's box
    assert not at.code  # no code for an invalid model
    # The shape table stops at the failing layer, marked; the diagram draws it in red.
    table = at.dataframe[0].value
    assert list(table["layer"])[-1] == "7. Conv2D" and list(table["output shape"])[-1] == "✗ invalid"
    assert list(table["output shape"])[-2] != "✗ invalid"
    assert 'n7 [label="7. Conv2D\\ninvalid"' in diagram(at) and "#dc3545" in diagram(at)
    assert at.session_state["spec_valid"] is False

    at.switch_page("pages/train.py").run()
    assert at.selectbox(key="train_model").value == "build"
    assert at.button(key="start").disabled
    assert "cannot be trained" in errors(at)[0] and "7 × 7 kernel" in errors(at)[0]


def test_six_pooling_layers_from_scratch_shrink_the_image_to_nothing(open_app):
    at = open_app(BUILD)
    load(at, "scratch")
    assert at.session_state["spec"].layers == ()
    assert not errors(at) and "The spec has no layers" in at.warning[0].value  # the whole model's, not a layer's
    assert at.selectbox(key="add_at").value == 1  # on an empty stack, position 1
    for _ in range(6):
        at.selectbox(key="add_type").set_value("MaxPooling2D")
        at.button(key="add").click().run()
    assert len(at.session_state["spec"].layers) == 6
    assert errors(at)[0].startswith("Layer 6 (MaxPooling2D): pool_size 2 with padding 'valid' does not fit its 1 × 1")
    assert [e.value for e in layer_box(at, "layer_5_pool_size").error] == errors(at)
    # Fixing it: remove one pooling layer, end with Flatten; the model becomes valid.
    at.button(key="remove_5").click().run()
    at.selectbox(key="add_type").set_value("Flatten")
    at.button(key="add").click().run()
    assert not errors(at)
    assert total_params(at) == 3 * 10 + 10  # 1x1x3 -> Dense(10)


def test_layers_can_be_edited_moved_and_removed(open_app):
    at = open_app(BUILD)
    load(at, "tiny")  # Conv2D(16), MaxPooling2D, Conv2D(32), MaxPooling2D, GlobalMaxPooling2D
    assert at.selectbox(key="add_at").value == 6  # a new layer goes at the end
    at.number_input(key="layer_0_filters").set_value(8)
    at.selectbox(key="layer_0_activation").set_value("gelu")
    at.checkbox(key="layer_0_use_bias").uncheck().run()
    first = at.session_state["spec"].layers[0]
    assert first == specs.Conv2D(8, 3, activation="gelu", use_bias=False)
    at.button(key="down_0").click().run()  # the edited Conv2D moves below the pooling layer
    layers = at.session_state["spec"].layers
    assert type(layers[0]) is specs.MaxPooling2D and layers[1] == first
    assert at.number_input(key="layer_1_filters").value == 8  # the widgets follow their layer
    at.button(key="up_1").click().run()
    assert at.session_state["spec"].layers[0] == first
    at.button(key="remove_1").click().run()
    assert len(at.session_state["spec"].layers) == 4
    at.selectbox(key="add_type").set_value("Dropout")
    at.selectbox(key="add_at").set_value(2)
    at.button(key="add").click().run()
    assert at.session_state["spec"].layers[1] == specs.Dropout()
    at.number_input(key="layer_1_rate").set_value(0.5).run()
    assert at.session_state["spec"].layers[1] == specs.Dropout(0.5)
    # Now Conv2D(8), Dropout, Conv2D(32), MaxPooling2D, GlobalMaxPooling2D; pooling strides: empty is pool_size.
    assert at.number_input(key="layer_3_strides").value is None
    at.number_input(key="layer_3_strides").set_value(1).run()
    assert at.session_state["spec"].layers[3] == specs.MaxPooling2D(2, strides=1)
    at.text_input(key="spec_name").set_value("mine").run()
    assert at.session_state["spec"].name == "mine" and not errors(at)
    # The edited spec survives a visit to another page.
    at.switch_page("pages/home.py").run()
    at.switch_page(BUILD).run()
    assert at.session_state["spec"].name == "mine"
    assert at.number_input(key="layer_1_rate").value == 0.5


def test_a_spec_json_round_trips_and_a_bad_one_is_refused(open_app):
    at = open_app(BUILD)
    text = spec_io.to_json(presets.PRESETS["report-2-1"].spec)
    at.file_uploader(key="spec_upload").set_value(("model.json", text.encode(), "application/json")).run()
    assert at.session_state["spec"] == presets.PRESETS["report-2-1"].spec
    assert at.selectbox(key="start_from").value == "current"  # "Start from" names the uploaded model, not fast
    assert total_params(at) == shapes.summary(presets.PRESETS["report-2-1"].spec)["params"]
    bad = text.replace('"Flatten"', '"Flattened"')
    at.file_uploader(key="spec_upload").set_value(("bad.json", bad.encode(), "application/json")).run()
    assert "unknown layer type" in errors(at)[0]
    assert at.session_state["spec"] == presets.PRESETS["report-2-1"].spec  # the current spec is kept
    at.file_uploader(key="spec_upload").set_value(("junk.json", b"{not json", "application/json")).run()
    assert "not valid JSON" in errors(at)[0]


def test_the_fast_preset_edits_its_airbench_fields(open_app):
    at = open_app(BUILD)
    load(at, "fast")
    assert not at.exception, at.exception
    assert at.number_input(key="layer_0_kernel_size").value == 2  # PatchWhitening
    assert at.selectbox(key="layer_1_activation").value == "gelu"  # Activation
    assert at.selectbox(key="layer_2_kernel_initializer").value == "dirac"
    assert at.checkbox(key="layer_4_scale").value is False and at.number_input(key="layer_4_epsilon").value == 1e-12
    for name in ("momentum", "epsilon"):  # no range of their own: the spec's check names a value outside its own
        widget = at.number_input(key=f"layer_4_{name}")
        assert (widget.min, widget.max) == (None, None)
    assert at.number_input(key="spec_logit_scale").value == pytest.approx(1 / 9)
    assert total_params(at) == 1_973_954
    code = at.code[0].value
    assert "from cifar_core.layers import PatchWhitening, Dirac" in code and "layers.Rescaling(0.1111" in code
    # A whitening layer anywhere but first is refused in place, naming the layer.
    at.number_input(key="spec_logit_scale").set_value(0.5).run()
    assert at.session_state["spec"].logit_scale == 0.5
    at.selectbox(key="add_type").set_value("PatchWhitening")
    at.selectbox(key="add_at").set_value(3)
    at.button(key="add").click().run()
    assert any("Layer 3 (PatchWhitening) must be the first layer" in e for e in errors(at))
    assert at.session_state["spec"].logit_scale == 0.5  # the output's scale survives a structural edit


def test_the_diagram_follows_every_edit_and_small_numbers_read_well(open_app):
    at = open_app(BUILD)
    load(at, "tiny")
    dot = diagram(at)
    assert dot.count(" [label=") == 1 + 5 + 1  # the input, five layers, the output
    assert 'n1 [label="1. Conv2D\\n32 × 32 × 16"' in dot
    at.number_input(key="layer_0_filters").set_value(64).run()
    assert 'n1 [label="1. Conv2D\\n32 × 32 × 64"' in diagram(at)
    wide = float(diagram(at).split('n1 [label=')[1].split("width=")[1].split(",")[0])
    assert wide > float(dot.split('n1 [label=')[1].split("width=")[1].split(",")[0])  # more channels, wider
    macs = {m.label: m.value for m in at.metric}["MACs per image"]
    assert macs.endswith((" k", " M")) and not macs.startswith("0.0")


def test_the_compact_editor_shows_one_row_a_layer(open_app):
    at = open_app(BUILD)
    load(at, "tiny")
    at.toggle(key="build_compact").set_value(True).run()
    assert not at.exception, at.exception
    assert "layer_0_filters" not in at.session_state  # no boxes: one table instead
    # numbered from 1, as the layer boxes and the messages count layers
    assert at.session_state["compact_rows"][0] == {"#": 1, "type": "Conv2D", "settings": "filters=16"}
    assert [row["#"] for row in at.session_state["compact_rows"]] == [1, 2, 3, 4, 5]
    # Each row's settings read back into the same layer, so an edit of the table becomes the stack.
    for layer in presets.PRESETS["fast"].spec.layers:
        assert spec_io.layer_from_settings(type(layer).__name__, spec_io.layer_settings(layer), 1) == layer
    with pytest.raises(specs.SpecError, match="Layer 2 .Conv2D.: write its settings as name=value"):
        spec_io.layer_from_settings("Conv2D", "filters 8", 2)


def test_a_reload_keeps_the_model_being_edited(open_app, app_env):
    (app_env / ".drafts").mkdir()
    for name, age_days in (("oldoldoldold", 31), ("recentrecent", 29)):
        (app_env / ".drafts" / f"{name}.json").write_text("{}")
        then = time.time() - age_days * 86400
        os.utime(app_env / ".drafts" / f"{name}.json", (then, then))
    at = open_app(BUILD)
    assert not (app_env / ".drafts" / "oldoldoldold.json").exists()  # a new session prunes drafts of 30 days
    assert (app_env / ".drafts" / "recentrecent.json").exists()
    load(at, "tiny")
    at.text_input(key="spec_name").set_value("mine").run()
    draft = at.query_params["draft"]
    draft = draft[0] if isinstance(draft, list) else draft
    assert (app_env / ".drafts" / f"{draft}.json").exists()
    from streamlit.testing.v1 import AppTest

    # a reload: a new session with the URL's query
    fresh = AppTest.from_file(str(helpers.ROOT / "app.py"), default_timeout=90)
    fresh.run()
    fresh.query_params["draft"] = draft
    fresh.switch_page(BUILD).run()
    assert fresh.session_state["spec"].name == "mine"
    assert len(fresh.session_state["spec"].layers) == 5
    # a second tab on the same link shares the draft while unchanged; its change goes to a draft of its own, and
    # the first tab's stays as it was (the two had overwritten each other's model)
    assert fresh.query_params["draft"] in (draft, [draft])
    fresh.text_input(key="spec_name").set_value("theirs").run()
    theirs = fresh.query_params["draft"]
    assert (theirs[0] if isinstance(theirs, list) else theirs) != draft
    assert json.loads((app_env / ".drafts" / f"{draft}.json").read_text())["name"] == "mine"

    # every page carries the draft in its URL, and a reload on Train finds the model there, not only on Build
    at.switch_page("pages/train.py").run()
    shown = at.query_params["draft"]
    assert (shown[0] if isinstance(shown, list) else shown) == draft
    on_train = AppTest.from_file(str(helpers.ROOT / "app.py"), default_timeout=90)
    on_train.run()
    on_train.query_params["draft"] = draft
    on_train.switch_page("pages/train.py").run()
    assert not on_train.exception and on_train.session_state["spec"].name == "mine"
    assert on_train.selectbox(key="train_model").value == "build"


def test_a_blank_model_name_is_the_warning_above_the_diagram_not_a_layers_error(open_app):
    at = open_app(BUILD)
    at.text_input(key="spec_name").set_value("   ").run()
    assert [w.value for w in at.warning] == [
        "The model is not valid yet. Name must be a text of 1 to 64 characters, not only spaces. The Train page "
        "will not start it."]
    assert not at.error and not at.exception
    at.text_input(key="spec_name").set_value("mine").run()
    assert not at.warning and at.session_state["spec_valid"]
    at.number_input(key="spec_logit_scale").set_value(0.0).run()  # a field's name keeps its spelling
    assert [w.value for w in at.warning] == [
        "The model is not valid yet. logit_scale must be a number in (0, 10], got 0.0. The Train page will not "
        "start it."]


def test_a_blank_name_keeps_the_whole_diagram_and_the_counts(open_app):
    at = open_app(BUILD)
    load(at, "tiny")
    at.text_input(key="spec_name").set_value("").run()
    assert at.warning and not at.exception
    assert diagram(at).count(" [label=") == 1 + 5 + 1  # the whole stack, not the input box alone
    assert {m.label for m in at.metric} == {"Parameters", "Non-trainable", "MACs per image"}
    assert any("Keras code appears once the model is valid" in c.value for c in at.caption)


def test_a_number_typed_out_of_range_is_what_the_page_checks(open_app):
    """Streamlit's own bounds would keep 0 in the box and go on with the last valid value."""
    at = open_app(BUILD)
    load(at, "tiny")
    at.number_input(key="layer_0_filters").set_value(0).run()
    assert [e.value for e in at.error] == ["Layer 1 (Conv2D): filters must be a whole number from 1 to 4096, got 0."]
    assert not at.session_state["spec_valid"] and not at.exception
    at.number_input(key="layer_2_filters").set_value(5000).run()  # a second wrong layer is named at once too
    assert [e.value for e in at.error] == ["Layer 1 (Conv2D): filters must be a whole number from 1 to 4096, got 0.",
                                           "Layer 3 (Conv2D): filters must be a whole number from 1 to 4096, got 5000."]
    at.number_input(key="layer_2_filters").set_value(32).run()
    at.number_input(key="spec_logit_scale").set_value(50.0).run()
    assert not at.session_state["spec_valid"]
    at.number_input(key="layer_0_filters").set_value(8).run()
    assert at.session_state["spec_error"] == "logit_scale must be a number in (0, 10], got 50.0."


def test_a_number_that_is_not_whole_is_refused_not_cut(open_app):
    """Streamlit's integer box read "2.5" as 2 (JavaScript's parseInt); the float box underneath passes 2.5 on."""
    at = open_app(BUILD)
    load(at, "tiny")
    at.number_input(key="layer_0_filters").set_value(2.5).run()
    assert [e.value for e in at.error] == ["Layer 1 (Conv2D): filters must be a whole number from 1 to 4096, got 2.5."]
    assert not at.session_state["spec_valid"] and not at.exception
    at.number_input(key="layer_0_filters").set_value(12.0).run()
    assert not at.error and at.session_state["spec_valid"]
    at.number_input(key="layer_0_filters").set_value(None).run()  # emptied: named so, not refilled with 0
    assert [e.value for e in at.error] == [
        "Layer 1 (Conv2D): filters must be a whole number from 1 to 4096, not empty."]


def test_an_emptied_decimal_box_stays_empty_through_other_edits(open_app):
    """A Dropout rate emptied was put through float() again on the next run of the page, which then failed on every
    run (found by random clicking)."""
    at = open_app(BUILD)
    load(at, "report-2-1")
    key = next(w.key for w in at.number_input if w.key and w.key.endswith("_rate"))
    at.number_input(key=key).set_value(None).run()
    at.text_input(key="spec_name").set_value("mine").run()
    assert not at.exception and at.number_input(key=key).value is None
    assert any("rate must be" in e.value and "empty" in e.value for e in at.error), [e.value for e in at.error]
    at.number_input(key=key).set_value(0.25).run()
    assert not at.exception and not at.error and at.session_state["spec_valid"]
