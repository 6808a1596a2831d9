"""Layers: one image through a model, layer by layer: each convolution's feature maps (most active first) and the first
layer's filters."""

import streamlit as st

import ui
from cifar_core import charts, data, explain, images, predict
from ui import data_picker, model_cache

ui.through_router("pages/layers.py")

st.title("Layers")
options = model_cache.model_options_or_stop()

c = st.columns([3, 1])
ref = model_cache.model_picker(c[0], options, "lay_model")
limit = c[1].slider("Maps per layer", 8, 64, 32, 8, key="lay_limit", **ui.KEEP)
model, class_names, _, mtime = model_cache.model_or_stop(ref)

mode = st.radio("Image", ["sample", "upload"], horizontal=True, key="lay_mode", **ui.KEEP,
                format_func={"upload": "Upload an image", "sample": "Embedded sample image"}.get)
if mode == "upload":
    upload = st.file_uploader(f"PNG, JPEG, WebP, GIF or BMP, up to {images.MAX_BYTES // 2**20} MB",
                              type=list(images.UPLOAD_EXTENSIONS), key="lay_file")
    if upload is None:
        st.caption("Upload an image to see what each layer makes of it.")
        st.stop()
    try:
        image, note = images.read_input(upload.getvalue())
    except images.ImageError as e:
        st.error(ui.problem(e))
        st.stop()
    if note:  # an image of a few pixels, or mostly cropped away, as Classify says it
        st.caption(note)
else:
    x, y, sample_names = data.load_sample()
    i = ui.bounded_number("Sample image", 0, len(x) - 1, 0, key="lay_sample", help=data_picker.sample_ranges(),
                          **ui.KEEP)
    if i is None:
        st.stop()
    st.caption(f"True class: {ui.md_escape(sample_names[y[i]])}")
    image = x[i]

top = predict.top_k(predict.predict_proba(model, image)[0], class_names, 1)[0]
left, right = st.columns([1, 3], gap="large")
left.image(charts.enlarge(image, 6),
           caption=f"the 32 × 32 input; the model says {ui.md_escape(top['label'])} ({top['probability']:.0%})")
try:
    filters = model_cache.first_layer_filters(ref, mtime)
except explain.NoConvolutionError:
    st.info("This model has no convolution layer, so it has no feature maps or filters to show; add a Conv2D layer "
            "on the Build page to see them.")
    st.stop()
except explain.FiltersNotImagesError as e:
    filters = str(e)  # the feature maps below are still drawn

# Named as the Build page numbers the stack ("3. Conv2D"): the built model is Rescaling, then the spec's layers.
position = {layer.name: i for i, layer in enumerate(model.layers)}
numbered = bool(model.layers) and type(model.layers[0]).__name__ == "Rescaling"
first = explain.first_filter_layer(model)
with right:
    kind = type(first).__name__
    st.subheader(f"{ui.md_escape(f'{position[first.name]}. {kind}')}: its filters" if numbered
                 else "First layer's filters")
    if isinstance(filters, str):
        st.info(filters)
    else:
        k = filters.shape[1]
        made = " fixed before training to whiten the images' patches (not learned)" if kind == "PatchWhitening" else ""
        st.caption(f"{len(filters)} filters of {k} × {k} pixels,{made}; each scaled to its own range and enlarged.")
        st.image(charts.filter_grid(filters))

for entry in model_cache.feature_maps(ref, mtime, image):
    h, w, channels = entry["output_shape"]
    title = f"{position[entry['name']]}. Conv2D" if numbered and entry["name"] in position else entry["name"]
    st.subheader(f"{ui.md_escape(title)}: output {h} × {w} × {channels}")
    which = f"All {channels} maps" if limit >= channels else f"The {limit} most active of {channels} maps"
    st.caption(f"{which}, highest mean activation first; each scaled to its own range, dark purple (low) to yellow "
               "(high).")
    st.image(charts.feature_map_grid(entry["maps"], limit))
