"""The data source a page uses: the sidebar's choice, a page's own picker that follows it, and the line naming the
data with one click to download CIFAR-10 or to use another dataset the server offers."""

from __future__ import annotations

import streamlit as st

import ui
from cifar_core import data, sources


def sample_ranges() -> str:
    """Which of the embedded sample's images are which split, for a picker that numbers them."""
    counts = data.sample_counts()
    train, val = counts["train"], counts["val"]
    return (f"0 to {train - val - 1:,}: training images; {train - val:,} to {train - 1:,}: validation images; "
            f"{train:,} to {train + counts['test'] - 1:,}: test images, which no run on the sample trained on.")


def data_choice() -> str:
    """The sidebar's data source: one of sources.app_sources() (or the app's default when a page runs on its own)."""
    choice = st.session_state.get("data_source")
    return choice if choice in sources.app_sources() else sources.app_default()


def data_source() -> str:
    """The sidebar's data source as load_data and TrainConfig.data take it (sources.app_source of data_choice())."""
    return sources.app_source(data_choice())


def source_picker(key: str, default: str, label: str = "Data source", help_: str | None = None,
                  follow: bool = False) -> str:
    """A selectbox of the data sources the app offers (sources.app_sources), starting at `default` (or the sample),
    its choice kept across pages by Streamlit (persist_state); with `follow`, it takes `default` again whenever
    `default` changes. A choice it no longer offers goes back to the start."""
    options = list(sources.app_sources())
    if f"{key}_next" in st.session_state:  # a choice made after this picker was drawn (choose_source)
        st.session_state[key] = st.session_state.pop(f"{key}_next")
    # follow: a page's picker takes a new `default` (the sidebar's choice). Once drawn it had kept its own, and the
    # page trained or evaluated on the sample while the sidebar said the dataset folder.
    followed = st.session_state.get(f"{key}_follows")
    if follow and followed is not None and followed != default and default in options:
        st.session_state[key] = default
    st.session_state[f"{key}_follows"] = default
    start = options.index(default) if default in options else options.index("sample")
    return st.selectbox(label, options, start, format_func=sources.app_sources().get, key=key, help=help_,
                        **ui.KEEP)


def choose_source(key: str, choice: str) -> None:
    """Sets the data-source picker `key` the next time it is drawn (a widget drawn in this run cannot be set)."""
    st.session_state[f"{key}_next"] = choice


def offline_note(choice: str) -> str:
    """' CIFAR-10 is not downloaded ...' when the sample is in use because CIFAR-10 cannot be had here, else ''."""
    standing_in = choice == "sample" and data.resolve_default_source()[1]
    return " CIFAR-10 is not downloaded and cannot be downloaded here (no network)." if standing_in else ""


def data_note(choice: str, key: str, named: bool = False) -> None:
    """One line naming the data used (unless the page has `named` it), with one click to download CIFAR-10 (where
    it can be had) or to use another dataset this server offers; `key` is the picker the click changes."""
    options = sources.app_sources()
    if not named:
        st.caption(f"Data: {ui.md_escape(options.get(choice, choice))}.{offline_note(choice)}")
    downloadable = choice != "keras" and not data.keras_downloaded() and data.can_download()
    others = [c for c in options if c not in (choice, "keras")]
    if not (downloadable or others):
        return
    with st.container(horizontal=True):
        if downloadable and st.button("Download CIFAR-10 (170 MB)", key=f"{key}_download"):
            try:
                with st.spinner("Downloading CIFAR-10 (about 170 MB, once)…"):
                    data.download_keras()
            except data.DataError as e:
                st.error(ui.problem(e))
            else:
                choose_source(key, "keras")
                st.rerun()
        if others:
            with st.popover("Use another dataset"):
                for other in others:
                    st.button(options[other], key=f"{key}_use_{other}", on_click=choose_source, args=(key, other))
