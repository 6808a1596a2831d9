"""CIFAR-10 CNN Studio: routes and the shared sidebar only; each page lives in pages/.

Streamlit starts a server process in its legacy pages/-folder mode until some run calls st.navigation, so a first
request for a deep link such as /train?run=... runs that page alone. Each page therefore starts with
ui.through_router(), which sends such a run here once; this script then forwards it to the page that was asked for.
"""

import streamlit as st

import ui
from cifar_core import sources
from ui import data_picker, model_cache

# No Material icons on the pages: Streamlit makes a page's icon the tab's favicon, and fetches a Material icon for
# that from fonts.gstatic.com, a request to another host (which fails offline). An emoji favicon is drawn in the page.
st.set_page_config(page_title="CIFAR-10 CNN Studio", page_icon="🧠", layout="wide")

page = st.navigation([
    st.Page("pages/home.py", title="Home", default=True),
    st.Page("pages/build.py", title="Build"),
    st.Page("pages/train.py", title="Train"),
    st.Page("pages/evaluate.py", title="Evaluate"),
    st.Page("pages/classify.py", title="Classify"),
    st.Page("pages/layers.py", title="Layers"),
    st.Page("pages/runs.py", title="Runs"),
    st.Page("pages/sweep.py", title="Sweep"),
])

with st.sidebar:
    data_picker.source_picker("data_source", sources.app_default(),
                     help_="CIFAR-10 from Keras, the embedded sample (always available), or a dataset in the "
                           "folders this server offers (its data roots).")
    model_cache.device_line()

ui.forward_deep_link()
ui.show_toasts()
st.session_state["routed"] = True
try:
    page.run()
finally:  # also when the page stops early (st.stop) or switches
    model_cache.find_device()
