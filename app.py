"""CIFAR-10 CNN Studio: routes and the shared sidebar only; each page lives in app_pages/.

The folder is deliberately not called pages/: when a pages/ folder sits next to the entry script, Streamlit starts a
process (and AppTest every run) in its legacy multipage mode until some run calls st.navigation, so a first request for
/build or /train?run=... (a reload after a server restart) would run that page alone, without this router and sidebar.
"""

import streamlit as st

import ui
from cifar_core import data

st.set_page_config(page_title="CIFAR-10 CNN Studio", layout="wide")

page = st.navigation([
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/build.py", title="Build", icon=":material/construction:"),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("app_pages/evaluate.py", title="Evaluate", icon=":material/analytics:"),
    st.Page("app_pages/classify.py", title="Classify", icon=":material/image_search:"),
    st.Page("app_pages/runs.py", title="Runs", icon=":material/history:"),
])

with st.sidebar:
    st.session_state.setdefault("data_source", data.default_source())
    st.text_input("Data source", key="data_source",
                  help="keras (CIFAR-10 via keras.datasets), sample (the embedded 2,000 images, always available), "
                       "or a path to cifar-10-batches-py, cifar-10-python.tar.gz or an image folder.")
    info = ui.device()
    st.caption(f"Device: {info['device']}  \nPrecision: {info['precision']}")

page.run()
