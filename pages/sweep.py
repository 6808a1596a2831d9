"""Sweep: a hyperparameter search as a form and a button. The sweep is an Optuna study run by its own process
(`python -m cifar_core sweep-worker`), so it outlives reruns; each trial is an ordinary run, queued behind any job.
This page defines the space, starts and stops the sweep, and reads the study: its trials, Optuna's figures, the
best trial."""

import streamlit as st

import ui
from cifar_core import data, presets, runs, sources, sweeps
from cifar_core import spec as specs
from ui import data_picker
from ui import sweep as view

ui.through_router("pages/sweep.py")

BUILD = "build"

st.title("Sweep")
choices = ([BUILD] if "spec" in st.session_state else []) + list(presets.PRESETS)
choice = st.selectbox("Model", choices, index=choices.index("tiny"), key="sweep_model", format_func=lambda c: (
    f"from the Build page: {st.session_state['spec'].name}" if c == BUILD else f"preset {c}"))
model_spec = st.session_state["spec"] if choice == BUILD else presets.PRESETS[choice].spec
space, trials, epochs, limit, source_choice, ready = view.search_form(model_spec)
data_picker.data_note(source_choice, "sweep_source")

if st.button("Start sweep", type="primary", key="sweep_start", disabled=not ready):
    try:
        config = sweeps.trial_config(model_spec, epochs, sources.app_source(source_choice), limit)
        started = sweeps.start_sweep(model_spec, config, space, trials)
    except (specs.SpecError, runs.RunError, data.DataError, OSError) as e:
        st.error(ui.setting_error(e))
    else:  # shown at once: the Study box had stayed on the study shown before, and nothing said it had started
        st.session_state["sweep_study"] = st.session_state["sweep_show"] = started
        st.toast(f"Sweep started: {trials} trials, one run each, behind any training in the queue.")

studies = [s["study"] for s in sweeps.local_studies()]
if not studies:
    st.info("No sweep yet in this runs folder: define the space above and press Start sweep.")
    st.stop()
if st.session_state.get("sweep_show") not in studies:  # the study shown last, kept across pages
    st.session_state["sweep_show"] = st.session_state.get("sweep_study") if st.session_state.get("sweep_study") \
        in studies else studies[0]
st.session_state["sweep_study"] = study = st.selectbox("Study", studies, key="sweep_show")
view.progress(study)
