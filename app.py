"""CIFAR-10 CNN Studio: routes and the shared sidebar only; each page lives in pages/.

Streamlit starts a server process in its legacy pages/-folder mode until some run calls st.navigation, so a first
request for a deep link such as /train?run=... runs that page alone. Each page therefore starts with
ui.through_router(), which sends such a run here once; this script then forwards it to the page that was asked for.
"""

import streamlit as st

import ui
from cifar_core import data

st.set_page_config(page_title="CIFAR-10 CNN Studio", layout="wide")

page = st.navigation([
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/build.py", title="Build", icon=":material/construction:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/analytics:"),
    st.Page("pages/classify.py", title="Classify", icon=":material/image_search:"),
    st.Page("pages/layers.py", title="Layers", icon=":material/layers:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/history:"),
    st.Page("pages/sweep.py", title="Sweep", icon=":material/tune:"),
])

with st.sidebar:
    st.session_state.setdefault("data_source", data.default_source())
    st.text_input("Data source", key="data_source",
                  help="keras (CIFAR-10 via keras.datasets), sample (the embedded 2,000 images, always available), "
                       "or a path to cifar-10-batches-py, cifar-10-python.tar.gz or an image folder.")
    info = ui.device()
    st.caption(f"Device: {info['device']}  \nPrecision: {info['precision']}")

ui.forward_deep_link()
st.session_state["routed"] = True
page.run()
