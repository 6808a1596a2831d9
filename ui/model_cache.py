"""The device and the models the pages show, found and loaded once: the sidebar's device line, the model choices,
each model cached per file version, and what cifar_core.explain computes from one (Grad-CAM, feature maps, filters)."""

from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st

import ui
from cifar_core import device as devices
from cifar_core import explain, models, runs


@st.cache_resource(show_spinner="Detecting the training device…")
def device() -> dict:
    return devices.device_info()


def _device_known() -> bool:
    return devices.device_info.cache_info().currsize > 0


def find_device() -> None:
    """Finds the device (devices.device_info, which imports TensorFlow) at the end of a page run, once the page is
    drawn, in the script's own thread. A thread of its own raced the next page run's import of Keras, and Python's
    import lock then failed one of them (_DeadlockError, a half-made module), so that a good model file was said
    not to load."""
    devices.device_info()


def device_line() -> None:
    """The sidebar's device and precision. Finding them held a server's first page blank for 7.3 s (headless
    Chromium, 2026-12-07): until find_device has found them after the page, a fragment looks again each second and
    reruns the app once they are known."""
    if _device_known():
        info = device()
        st.caption(f"Device: {info['device']}  \nNumber format: {info['precision']}")
    else:
        _device_pending()


@st.fragment(run_every=1)
def _device_pending() -> None:
    if _device_known():
        st.rerun()
    st.caption("Device: being detected…")


def has_default_model() -> bool:
    return (models.DEFAULT_RUN / "model.keras").exists()


def model_options() -> dict[str, str]:
    """{model reference: label} of every model that can be loaded: the shipped default (if present), then runs."""
    options = {}
    if has_default_model():
        options["default"] = "default (the shipped model)"
    for row in runs.list_runs():
        if row["has_model"]:
            options[row["run_id"]] = f"{ui.run_title(row['run_id'])} · {row['state']}"
    return options


def model_options_or_stop() -> dict[str, str]:
    """model_options(), or, when there is no model at all, a sentence saying how to get one and the end of the page."""
    options = model_options()
    if not options:
        st.info("There is no trained model yet, and the shipped default model is not in this installation. Train one "
                "on the Train page (the tiny preset on the sample data takes about a minute), then come back here.")
        st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
        st.stop()
    return options


def model_picker(column, options: dict[str, str], key: str) -> str:
    """The Model box of Evaluate, Classify and Layers, in `column`. A model chosen on one of them is the one the others
    show next (a run evaluated, then Classify and Layers had opened on the shipped model); each box keeps its choice
    across pages until a model is chosen elsewhere."""
    chosen = st.session_state.get("model_chosen")
    if chosen in options and st.session_state.get(f"{key}_follows") != chosen:
        st.session_state[key] = chosen  # set before the box is drawn, as a widget's value may be
    ref = column.selectbox("Model", list(options), format_func=options.get, key=key, **ui.KEEP)
    if isinstance(chosen, str) and chosen not in options:  # said once: the box had changed model without a word
        column.warning(f"The model {ui.md_escape(chosen)} is gone (its run deleted, or its model file removed, "
                       f"perhaps in another tab): this page now shows {ui.md_escape(options[ref])}.")
    st.session_state["model_chosen"] = st.session_state[f"{key}_follows"] = ref
    return ref


def model_mtime(ref: str) -> int:
    path, _ = models.resolve_model(ref, allow_paths=False)
    return path.stat().st_mtime_ns


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def load_model(ref: str, model_mtime_ns: int):
    """(model, class names, its test-time augmentation: off, mirror or mirror-shift) of a model reference, loaded
    once per file version (pass model_mtime(ref))."""
    path, run_dir = models.resolve_model(ref, allow_paths=False)
    model = models.load_model(path)
    return model, models.class_names_for(run_dir, model.output_shape[-1]), models.tta_for(run_dir)


def model_or_stop(ref: str):
    """(model, class names, TTA, model mtime) of the chosen model; a model that cannot be loaded ends the page with
    its sentence."""
    try:
        mtime = model_mtime(ref)
        return (*load_model(ref, mtime), mtime)
    except (ValueError, OSError) as e:  # RunError is a ValueError
        st.error(ui.problem(e))
        st.stop()


@st.cache_data(show_spinner="Computing the heatmap…", max_entries=64)
def grad_cam(ref: str, model_mtime_ns: int, image: np.ndarray, class_index: int) -> np.ndarray:
    """explain.grad_cam's heatmap, cached per model version, image (hashed by content) and class."""
    heatmap, _ = explain.grad_cam(load_model(ref, model_mtime_ns)[0], image, class_index)
    return heatmap


@st.cache_data(show_spinner="Computing the feature maps…", max_entries=8)
def feature_maps(ref: str, model_mtime_ns: int, image: np.ndarray) -> list[dict]:
    return explain.feature_maps(load_model(ref, model_mtime_ns)[0], image)


@st.cache_data(show_spinner=False, max_entries=8)
def first_layer_filters(ref: str, model_mtime_ns: int) -> np.ndarray:
    return explain.first_layer_filters(load_model(ref, model_mtime_ns)[0])


def saliency(ref: str, image: np.ndarray, predicted: str, key: str, opacity: float, scale: int = 6) -> None:
    """The Grad-CAM overlay of one image under a class picker (default: the predicted class, by name), or the
    sentence saying why this model has no map to show."""
    mtime = model_mtime(ref)
    model, names, _ = load_model(ref, mtime)
    predicted = names.index(predicted)
    try:
        method = explain.cam_method(model)
    except explain.NoConvolutionError as e:
        st.info(str(e))
        return
    digest = hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()[:12]
    # keyed by the model too: another model has another predicted class, so its picker starts from that one
    chosen = st.selectbox("Heatmap for class", range(len(names)), index=predicted,
                          key=f"{key}_{digest}_{hashlib.sha256(f'{ref}:{mtime}'.encode()).hexdigest()[:8]}",
                          format_func=lambda i: f"{names[i]} (predicted)" if i == predicted else names[i])
    heatmap = grad_cam(ref, mtime, image, chosen)
    note = " (element-wise, HiResCAM, as this model flattens its last map)" if method == "HiResCAM" else ""
    st.image(explain.enlarged_overlay(image, heatmap, opacity, scale),
             caption=f"Grad-CAM{note}: where the model finds “{ui.md_escape(names[chosen])}”, tinted yellow where "
                     "it counted most and dimmed where it did not count")
    if not heatmap.any():
        st.caption("Nothing in this image counts for that class (the map is empty).")
