"""Evaluate: a trained model's accuracy, confusion matrix, per-class scores, its most confused class pairs and a
gallery of its predictions."""

import streamlit as st

import ui
from cifar_core import data, sources
from ui import data_picker, model_cache
from ui import evaluate as view

ui.through_router("pages/evaluate.py")

st.title("Evaluate")
if not model_cache.has_default_model():
    st.caption("The shipped default model is not in this installation (cifar_core/assets/default/model.keras is "
               "missing), so only your trained runs are offered.")
options = model_cache.model_options_or_stop()

c = st.columns([3, 2, 1, 1], vertical_alignment="bottom")
ref = model_cache.model_picker(c[0], options, "eval_model")
with c[1]:
    choice = data_picker.source_picker("eval_source", data_picker.data_choice(), follow=True)
split = c[2].radio("Split", ["test", "val"], key="eval_split", horizontal=True, **ui.KEEP)
if c[3].button("Evaluate", type="primary", key="eval_go"):
    st.session_state["eval_request"] = (ref, split, choice)
data_picker.data_note(choice, "eval_source")
if st.session_state.get("eval_request") != (ref, split, choice):
    st.info("Choose a model, a data source and a split, then press Evaluate.")
    st.stop()

try:
    source = sources.app_source(choice)
    with st.spinner("Loading the data and the model…"):
        result = view.run_evaluation(ref, split, source, model_cache.model_mtime(ref), data.source_version(source))
except (data.DataError, ValueError, OSError) as e:  # RunError is a ValueError
    st.error(ui.problem(e))
    st.stop()

view.summary(result, split)
left, right = st.columns([3, 2], gap="large")
with left:
    view.confusion_matrix(result)
with right:
    view.per_class(result)

x = view.images_or_stop(result)
view.confused_pairs(result, x)
view.gallery(result, x)
