"""Classify: uploaded images (or embedded sample images) -> the model's top-k classes and a Grad-CAM heatmap of where
it looks, one file at a time so that a bad file only costs its own row."""

import streamlit as st

import ui
from cifar_core import charts, data, images, predict
from ui import data_picker, model_cache

ui.through_router("pages/classify.py")


def show_file(position: int, name: str, payload: bytes, result: dict, ref: str, opacity: float) -> None:
    """One file: its name (as plain text: a file name is never markup), then the original, the 32x32 input the
    model sees, its Grad-CAM heatmap and the top-k bars; or the sentence saying why the file cannot be classified."""
    with st.container(border=True):
        st.text(name)
        if "error" in result:
            st.error(result["error"])
            return
        if "note" in result:
            st.caption(result["note"])
        image = images.to_input_array(payload)
        c = st.columns([2, 2, 2, 3])
        c[0].image(images.preview_png(payload), caption="original")
        c[1].image(charts.enlarge(image, 6), caption="what the model sees (the centre square at 32 × 32)")
        with c[2]:
            model_cache.saliency(ref, image, result["top"][0]["label"], f"cls_cam_{position}", opacity)
        c[3].plotly_chart(charts.top_k_bar(result["top"]), key=f"top_k_{position}", config=ui.NO_TOOLBAR)


st.title("Classify images")
options = model_cache.model_options_or_stop()

c = st.columns([3, 1, 1])
ref = model_cache.model_picker(c[0], options, "cls_model")
k = c[1].slider("Top-k", 1, 10, 3, key="cls_k", **ui.KEEP)
opacity = c[2].slider("Heatmap opacity", 0.0, 1.0, 0.5, step=0.05, key="cls_opacity", **ui.KEEP)
model, class_names, tta, _ = model_cache.model_or_stop(ref)
if tta != "off":
    st.caption("This model was trained for test-time augmentation: " + predict.TTA_SENTENCES[tta])

mode = st.radio("Images", ["upload", "sample"], horizontal=True, key="cls_mode", **ui.KEEP,
                format_func={"upload": "Upload images", "sample": "Embedded sample images"}.get)
if mode == "upload":
    files = ui.kept_uploads("cls_files", f"PNG, JPEG, WebP, GIF or BMP, up to {images.MAX_BYTES // 2**20} MB each",
                            list(images.UPLOAD_EXTENSIONS))
else:
    x, y, sample_names = data.load_sample()
    i = ui.bounded_number("Sample image", 0, len(x) - 1, 0, key="cls_sample", help=data_picker.sample_ranges(),
                          **ui.KEEP)
    if i is None:
        st.stop()
    files = [(f"sample image {i} (true class: {sample_names[y[i]]})", images.encode_png(x[i]))]  # said once

if not files:
    st.caption("Upload one or more images to classify them.")
with st.spinner("Classifying…"):
    for position, (name, payload) in enumerate(files):
        show_file(position, name, payload, predict.classify(model, class_names, [(name, payload)], k, tta)[0], ref,
                  opacity)
