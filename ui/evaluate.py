"""The Evaluate page's Streamlit pieces: the cached evaluation and dataset, the confusion-matrix and pair callbacks
that set the gallery's filters, and the sections that draw a result (metrics, matrix, per-class scores, most
confused pairs, gallery)."""

from __future__ import annotations

import streamlit as st

import ui
from cifar_core import charts, data, evaluate, predict, sources
from cifar_core.config import tta_mode

ANY = "(any)"


@st.cache_data(show_spinner=False, max_entries=16)
def run_evaluation(ref: str, split: str, source: str, model_mtime_ns: int, data_version: str) -> dict:
    """evaluate.evaluate_model, cached per model file version and data version (data.source_version): keyed by the
    source's name alone, a folder's old figures stayed after images were added to it."""
    # The progress bar is created inside the cached function, so that a cache hit replays it (and its removal).
    bar = st.progress(0.0, text="Predicting…")
    try:
        return {**evaluate.evaluate_model(ref, split, source or None,
                                          progress=lambda f: bar.progress(f, text=f"Predicting… {f:.0%}")),
                "data_version": data_version}  # for its images (images_or_stop): the source listed once a rerun
    finally:
        bar.empty()  # also when it fails: no bar is left above the error


@st.cache_resource(show_spinner="Loading the images…", max_entries=2)
def load_dataset(source: str, data_version: str) -> data.Dataset:
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


def summary(result: dict, split: str) -> None:
    """Which data was evaluated, then accuracy, loss, top-3 accuracy, the image count and any test-time
    augmentation."""
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


def confusion_matrix(result: dict) -> None:
    """The clickable matrix; a click on a cell sets the gallery's filters (apply_cell_click)."""
    st.subheader("Confusion matrix")
    normalize = st.toggle("Row-normalised (each true class sums to 100%)", False, key="cm_normalize",
                          **ui.KEEP)
    event = st.plotly_chart(charts.confusion_chart(result["confusion_matrix"], result["class_names"], normalize),
                            on_select="rerun", selection_mode="points", key="cm_chart")
    st.caption("Click a cell to show its images in the gallery below.")
    apply_cell_click(event)


def per_class(result: dict) -> None:
    """Precision, recall and F1 in percent, as the accuracy above them is."""
    st.subheader("Per class")
    scores = ("precision", "recall", "f1")
    rows = [{**row, **{k: 100 * row[k] for k in scores}} for row in result["per_class"]]
    st.dataframe(rows, hide_index=True, key="per_class_table", column_config={
        k: st.column_config.NumberColumn(format="%.1f%%") for k in scores})
    st.plotly_chart(charts.per_class_bars(result["per_class"]), key="per_class_chart", config=ui.NO_TOOLBAR)


def images_or_stop(result: dict):
    """The evaluated split's images; a data source that cannot be read, or has changed since the evaluation, ends
    the page with its sentence."""
    try:
        x, _, _ = load_dataset(result["source"], result["data_version"]).split(result["split"])
    except data.DataError as e:
        st.error(ui.problem(e))
        st.stop()
    if len(x) != result["n"]:
        st.warning("The data source has changed since this evaluation; press Evaluate again to see its images.")
        st.stop()
    return x


def confused_pairs(result: dict, x) -> None:
    """The five most confused class pairs, each with its most confident mistakes and a button to the gallery."""
    st.subheader("Most confused pairs")
    pairs = evaluate.confused_pairs_with_mistakes(result, top=5, per_pair=6)
    if not pairs:
        st.caption("No mistakes at all.")
    for n, pair in enumerate(pairs):
        head = st.columns([4, 1], vertical_alignment="center")
        head[0].markdown(f"**{ui.md_escape(pair['true'])} → {ui.md_escape(pair['pred'])}** ({pair['count']} "
                         f"{'image' if pair['count'] == 1 else 'images'}), its most confident mistakes:")
        head[1].button("Show in the gallery", key=f"pair_{n}", on_click=show_pair, args=(pair["true"], pair["pred"]))
        with st.container(horizontal=True, wrap=True):  # a row that wraps: on a phone columns would stack them
            for item in pair["mistakes"]:
                # a caption is Markdown to Streamlit, and a class name is a folder's name
                st.image(charts.enlarge(x[item["index"]], 3), width=96,
                         caption=f"{item['confidence']:.0%} {ui.md_escape(pair['pred'])}")


def gallery(result: dict, x) -> None:
    """The predictions filtered by the four widgets (misclassified only, true class, predicted class, how many),
    each image captioned green when right, red when wrong."""
    names = result["class_names"]
    st.subheader("Gallery", anchor="gallery")
    if st.session_state.pop("scroll_to_gallery", False):
        ui.scroll_to("gallery")
    # The filters keep themselves across pages (persist_state), starting from their own defaults: with Session State
    # written before each of them instead, a rerun drawing a new evaluation showed them reset while the gallery
    # still filtered by the old values. A pair's button and a matrix cell set them in callbacks.
    g = st.columns(4, vertical_alignment="bottom")
    shown_for = (result.get("model_sha256"), result.get("data_sha256"), result["split"])
    if st.session_state.get("gal_for") != shown_for:  # another evaluation starts unfiltered: cat → automobile, set
        for key in ("gal_wrong", "gal_true", "gal_pred"):  # for one model, had left the next one's gallery empty
            st.session_state.pop(key, None)
        st.session_state["gal_for"] = shown_for
    wrong = g[0].checkbox("Misclassified only", False, key="gal_wrong", **ui.KEEP)
    true_class = g[1].selectbox("True class", [ANY, *names], 0, key="gal_true", **ui.KEEP)
    pred_class = g[2].selectbox("Predicted class", [ANY, *names], 0, key="gal_pred", **ui.KEEP)
    with g[3]:
        limit = ui.bounded_number("Images", 1, 200, 40, step=8, key="gal_limit", **ui.KEEP)
    if limit is None:
        return
    filters = {"misclassified_only": wrong, "true_class": None if true_class == ANY else true_class,
               "pred_class": None if pred_class == ANY else pred_class}
    found = evaluate.gallery(result, **filters, limit=None)  # every match once: counted, then the first shown
    items, matching = found[:limit], len(found)
    if wrong and true_class == pred_class != ANY:
        st.caption("No image matches: a misclassified image is never predicted as its own class.")
    elif not items:
        st.caption("No image matches these filters.")
    elif len(items) < matching:
        st.caption(f"{len(items):,} of the {matching:,} matching images, the most confident first.")
    else:
        st.caption("The one matching image." if matching == 1 else
                   f"All {matching:,} matching images, the most confident first.")
    with st.container(horizontal=True, wrap=True):  # thumbnails that wrap at any width, a phone's included
        for item in items:
            with st.container(width=120, gap=None):
                st.image(charts.enlarge(x[item["index"]], 3), width=96)
                color = "green" if item["true"] == item["pred"] else "red"
                st.markdown(f":{color}[{ui.md_escape(item['true'])} → {ui.md_escape(item['pred'])} "
                            f"({item['confidence']:.0%})]")
