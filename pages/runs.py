"""Runs: every training run, their curves side by side, downloads, renaming and deletion; the queue; what changed
between two runs."""

import streamlit as st

import ui
from cifar_core import runs
from ui import runs_page as view

ui.through_router("pages/runs.py")

st.title("Runs")
rows = runs.list_runs()
if not rows:
    st.info("No runs yet: start one on the Train page (the tiny preset on the sample takes seconds).")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

selected = view.table(rows)

st.subheader("Compare curves")
view.curves(selected)

st.subheader("Manage a run")
view.manage(rows, selected)

view.queue()

st.subheader("What changed between two runs")
view.what_changed(rows, selected)
