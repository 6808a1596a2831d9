"""Landing page: what the tool does, whether the data is there, and the workflow in order."""

import streamlit as st

import ui
from cifar_core import sources
from ui import data_picker

ui.through_router("pages/home.py")

st.title("CIFAR-10 CNN Studio")
st.markdown(
    "Design a convolutional network layer by layer and see its shapes, parameters and cost as you edit.  \n"
    "Train it on CIFAR-10 as a background job you can watch, stop and resume, then compare runs.  \n"
    "Evaluate a trained model (confusion matrix, per-class scores, its mistakes), classify your own images and look "
    "inside the network."
)

choice = data_picker.data_choice()
available, message = sources.source_status(choice if choice in ("keras", "sample") else sources.app_source(choice))
message += data_picker.offline_note(choice)  # the sample standing in for CIFAR-10
(st.success if available else st.warning)(message if choice in ("keras", "sample")
                                           else f"The dataset {choice} in this server's data folders.")
data_picker.data_note(choice, "data_source", named=True)  # the line above names it
if not available:
    st.caption("The embedded sample always works, without a download; choose the data source in the sidebar.")

# Two first steps for a newcomer, before the seven pages in order (which had stood alone, of equal weight)
st.subheader("Start here")
first, second = st.columns(2)
with first.container(border=True):
    st.markdown("**Try the shipped model now.** It is trained already (the `fast` preset: about 90% on CIFAR-10 "
                "images it never saw). Upload a photo and see what it makes of it, and where it looks.")
    st.page_link("pages/classify.py", label="Classify an image", icon=":material/image_search:")
with second.container(border=True):
    st.markdown("**Train your first model.** On Train, *preset tiny* on the embedded sample trains in seconds while "
                "its curves grow; then evaluate it and see its mistakes.")
    st.page_link("pages/train.py", label="Train a model", icon=":material/model_training:")

st.subheader("Workflow")
for path, label, icon, what in (
    ("pages/build.py", "Build", "construction", "start from a preset or from scratch and edit the layer stack"),
    ("pages/train.py", "Train", "model_training", "train the model as a background job with live curves"),
    ("pages/evaluate.py", "Evaluate", "analytics",
     "accuracy, confusion matrix, per-class scores and a gallery of mistakes"),
    ("pages/classify.py", "Classify", "image_search",
     "upload images and see the model's top guesses and where it looks (Grad-CAM)"),
    ("pages/layers.py", "Layers", "layers",
     "an image's feature maps in every convolution, and the first layer's filters"),
    ("pages/runs.py", "Runs", "history", "compare, rename, download and delete runs"),
    ("pages/sweep.py", "Sweep", "tune", "search the settings with Optuna, each trial a run, and open the best one"),
):
    st.page_link(path, label=label, icon=f":material/{icon}:")  # a short link and the text below it: it wraps
    st.caption(what[:1].upper() + what[1:] + ".")
