"""Build: edit a ModelSpec layer by layer and see its shapes, parameters, MACs and Keras code as you go."""

import streamlit as st

import ui
from cifar_core import presets, shapes
from cifar_core import spec as specs
from ui import build as view
from ui import drafts

ui.through_router("pages/build.py")

if "spec" not in st.session_state:
    st.session_state["spec"] = drafts.load_draft(st.query_params.get("draft")) or presets.PRESETS["fast"].spec
spec = st.session_state["spec"]
st.title("Build a model")
view.start_row(spec)

summary, editor = st.columns(2, gap="large")  # the summary first: on a narrow screen it comes before the stack
with editor:
    st.session_state.setdefault("spec_name", spec.name)
    name = st.text_input("Model name", key="spec_name", max_chars=64)
    st.caption("Input: 32 × 32 × 3 images, rescaled from [0, 255] to [0, 1].")
    compact = st.toggle("Compact table editor (one row a layer)", False, key="build_compact", **ui.KEEP)
    layers, slots = view.compact_table(spec) if compact else view.layer_boxes(spec)
    st.session_state.setdefault("spec_logit_scale", float(spec.logit_scale))
    output = st.columns([2, 1], vertical_alignment="center")
    output[0].caption("Output: Dense(10), its logits × logit scale, then softmax; added automatically.")
    with output[1]:
        logit_scale = ui.number_input("Logit scale", step=0.1, format="%g", key="spec_logit_scale",
                                      help="airbench uses 1/9: smaller logits learn more gently.")
    general_slot = st.empty()
    view.add_row(spec)

spec = specs.replace(spec, name=name, layers=tuple(layers), logit_scale=logit_scale)
st.session_state["spec"] = spec
st.query_params["draft"] = drafts.save_draft(spec)  # a reload of this page keeps the model being edited
error = shapes.first_error(spec)
st.session_state["spec_valid"] = error is None
st.session_state["spec_error"] = error[1] if error else None
if error:  # a layer's problem goes next to it (every layer's wrong value at once); the model's is the warning above
    for index, message in (shapes.layer_errors(spec) | ({error[0]: error[1]} if error[0] else {})).items():
        (slots[index - 1] if index <= len(slots) else general_slot).error(ui.sentence(message))

with summary:
    if error and error[0]:
        st.warning("The model is not valid yet: the shapes below stop at the failing layer (in red), and the Keras "
                   "code appears once it is valid. The Train page will not start it.")
    elif error:
        st.warning(f"The model is not valid yet. {ui.sentence(error[1])} The Train page will not start it.")
    rows, counts = shapes.stack_view(spec)
    if counts:
        view.totals(counts)
    view.tabs(spec, rows, counts, error[0] if error else None, valid=error is None)
