"""Evaluate: a trained model's accuracy, confusion matrix, per-class scores, its most confused class pairs and a
gallery of its predictions."""

import streamlit as st

import ui
from cifar_core import charts, data, evaluate, predict, sources
from cifar_core.config import tta_mode

ui.through_router("pages/evaluate.py")

ANY = "(any)"


@st.cache_data(show_spinner=False, max_entries=16)
def run_evaluation(ref: str, split: str, source: str, model_mtime_ns: int) -> dict:
    # The progress bar is created inside the cached function, so that a cache hit replays it (and its removal).
    bar = st.progress(0.0, text="Predicting…")
    try:
        return evaluate.evaluate_model(ref, split, source or None,
                                       progress=lambda f: bar.progress(f, text=f"Predicting… {f:.0%}"))
    finally:
        bar.empty()  # also when it fails: no bar is left above the error


@st.cache_resource(show_spinner="Loading the images…", max_entries=2)
def load_dataset(source: str) -> data.Dataset:
    return data.load_data(source or None)


def apply_cell_click(event) -> None:
    """A click on a confusion-matrix cell sets the gallery's true and predicted class filters (once per click)."""
    points = ((event or {}).get("selection") or {}).get("points") or []
    cell = (charts.plain(points[0].get("y")), charts.plain(points[0].get("x"))) if points else None
    if cell and cell != st.session_state.get("cm_applied") and all(isinstance(c, str) for c in cell):
        st.session_state["gal_true"], st.session_state["gal_pred"] = cell
        st.session_state["gal_wrong"] = cell[0] != cell[1]
        st.session_state["scroll_to_gallery"] = True
    st.session_state["cm_applied"] = cell


def show_pair(true: str, pred: str) -> None:
    """A most-confused pair's button: the gallery shows that pair's mistakes."""
    st.session_state["gal_true"], st.session_state["gal_pred"], st.session_state["gal_wrong"] = true, pred, True
    st.session_state["scroll_to_gallery"] = True


st.title("Evaluate")
if not ui.has_default_model():
    st.caption("The shipped default model is not in this installation (cifar_core/assets/default/model.keras is "
               "missing), so only your trained runs are offered.")
options = ui.model_options_or_stop()

c = st.columns([3, 2, 1, 1], vertical_alignment="bottom")
ui.kept("eval_model", next(iter(options)))
if st.session_state["eval_model"] not in options:
    st.session_state["eval_model"] = next(iter(options))
ref = ui.keep_widget(c[0].selectbox, "Model", list(options), format_func=options.get, key="eval_model")
with c[1]:
    choice = ui.source_picker("eval_source", ui.data_choice())
ui.kept("eval_split", "test")
split = ui.keep_widget(c[2].radio, "Split", ["test", "val"], key="eval_split", horizontal=True)
if c[3].button("Evaluate", type="primary", key="eval_go"):
    st.session_state["eval_request"] = (ref, split, choice)
ui.data_note(choice, "eval_source")
if st.session_state.get("eval_request") != (ref, split, choice):
    st.info("Choose a model, a data source and a split, then press Evaluate.")
    st.stop()

try:
    source = sources.app_source(choice)
    with st.spinner("Loading the data and the model…"):
        result = run_evaluation(ref, split, source, ui.model_mtime(ref))
except (data.DataError, ValueError, OSError) as e:  # RunError is a ValueError
    st.error(ui.md_escape(str(e)))
    st.stop()

names = result["class_names"]
if split == "test" and result["split"] == "val":
    st.info("This data source has no test split, so the validation split is evaluated instead.")
st.caption(f"Evaluated on the {'test' if result['split'] == 'test' else 'validation'} split of "
           f"{ui.md_escape(sources.app_label(result['source']))}: {result['n']:,} images.")
m = st.columns(4)
m[0].metric("Accuracy", f"{result['accuracy']:.1%}")
m[1].metric("Loss", f"{result['loss']:.3f}")
m[2].metric("Top-3 accuracy", f"{result['top3_accuracy']:.1%}")
m[3].metric(f"Images ({result['split']})", f"{result['n']:,}")
if tta_mode(result.get("tta")) != "off":
    st.caption("With test-time augmentation, as this model was trained to be used: "
               + predict.TTA_SENTENCES[tta_mode(result.get("tta"))])

left, right = st.columns([3, 2], gap="large")
with left:
    st.subheader("Confusion matrix")
    ui.kept("cm_normalize", False)
    normalize = ui.keep_widget(st.toggle, "Row-normalised (each true class sums to 1)", key="cm_normalize")
    figure = charts.confusion_heatmap(result["confusion_matrix"], names, normalize)
    # Readable on a phone too: the colour bar above the matrix (not beside it), every class named, small type.
    figure.update_layout(coloraxis_colorbar={"orientation": "h", "y": 1.0, "yanchor": "bottom", "thickness": 10,
                                             "title": {"side": "top"}}, margin={"t": 60, "b": 10, "l": 10, "r": 10})
    figure.update_xaxes(dtick=1, tickfont_size=10)
    figure.update_yaxes(dtick=1, tickfont_size=10)
    figure.update_traces(textfont_size=9, selector={"type": "heatmap"})
    event = st.plotly_chart(charts.clickable_cells(figure, result["confusion_matrix"], names), on_select="rerun",
                            selection_mode="points", key="cm_chart")
    st.caption("Click a cell to show its images in the gallery below.")
    apply_cell_click(event)
with right:
    st.subheader("Per class")
    st.dataframe(result["per_class"], hide_index=True, key="per_class_table", column_config={
        k: st.column_config.NumberColumn(format="%.3f") for k in ("precision", "recall", "f1")})
    st.plotly_chart(charts.per_class_bars(result["per_class"]), key="per_class_chart")

try:
    x, _, _ = load_dataset(result["source"]).split(result["split"])
except data.DataError as e:
    st.error(ui.md_escape(str(e)))
    st.stop()
if len(x) != result["n"]:
    st.warning("The data source has changed since this evaluation; press Evaluate again to see its images.")
    st.stop()
predictions = result["predictions"]

st.subheader("Most confused pairs")
pairs = evaluate.most_confused_pairs(result, top=5)
if not pairs:
    st.caption("No mistakes at all.")
for n, pair in enumerate(pairs):
    head = st.columns([4, 1], vertical_alignment="center")
    head[0].markdown(f"**{ui.md_escape(pair['true'])} → {ui.md_escape(pair['pred'])}** ({pair['count']} "
                     f"{'image' if pair['count'] == 1 else 'images'}), its most confident mistakes:")
    head[1].button("Show in the gallery", key=f"pair_{n}", on_click=show_pair, args=(pair["true"], pair["pred"]))
    cells = st.columns(8)
    for k, i in enumerate(evaluate.select_predictions(result, true_class=pair["true"], pred_class=pair["pred"],
                                                      limit=6)):
        cells[k].image(charts.enlarge(x[i], 3), caption=f"{predictions['confidence'][i]:.0%} {pair['pred']}",
                       width="stretch")

st.subheader("Gallery", anchor="gallery")
if st.session_state.pop("scroll_to_gallery", False):
    ui.scroll_to("gallery")
g = st.columns(4, vertical_alignment="bottom")
for key, default in (("gal_wrong", False), ("gal_true", ANY), ("gal_pred", ANY), ("gal_limit", 40)):
    ui.kept(key, default)
for key in ("gal_true", "gal_pred"):
    if st.session_state[key] not in (ANY, *names):
        st.session_state[key] = ANY  # a class of another evaluation's data
wrong = ui.keep_widget(g[0].checkbox, "Misclassified only", key="gal_wrong")
true_class = ui.keep_widget(g[1].selectbox, "True class", [ANY, *names], key="gal_true")
pred_class = ui.keep_widget(g[2].selectbox, "Predicted class", [ANY, *names], key="gal_pred")
limit = ui.keep_widget(g[3].number_input, "Images", 8, 200, step=8, key="gal_limit")
indices = evaluate.select_predictions(result, misclassified_only=wrong,
                                      true_class=None if true_class == ANY else true_class,
                                      pred_class=None if pred_class == ANY else pred_class, limit=int(limit))
if not indices:
    st.caption("No image matches these filters.")
cells = st.columns(8)
for k, i in enumerate(indices):
    true, pred = names[predictions["true"][i]], names[predictions["pred"][i]]
    with cells[k % 8]:
        st.image(charts.enlarge(x[i], 3), width="stretch")
        color = "green" if true == pred else "red"
        st.markdown(f":{color}[{ui.md_escape(true)} → {ui.md_escape(pred)} "
                    f"({predictions['confidence'][i]:.0%})]")
