"""The Build page's Streamlit pieces: the callbacks of its structural edits (add, move, remove, load, upload, the
compact table), one widget per layer field, and the parts of the page drawn from the spec (start row, layer boxes,
summary tiles and tabs). The spec edits themselves are cifar_core.spec's and spec_io's."""

import dataclasses

import streamlit as st

import ui
from cifar_core import builder, charts, presets, shapes, spec_io
from cifar_core import spec as specs

SCRATCH = "scratch"
CURRENT = "current"
# The float fields' steps and formats. No bounds go to the widgets (ui.number_input): the spec's own check
# (specs.float_bounds, specs.INT_RANGES) names a value out of range next to its layer. %g, as the Train page's, shows
# the value the model gets: a fixed number of decimals showed a dropout rate of 0.99999 as 1.000 (refused if typed).
FLOAT_WIDGETS = {"momentum": (0.01, "%g"), "rate": (0.05, "%g"), "epsilon": (1e-4, "%.1e")}


def set_spec(new: specs.ModelSpec) -> None:
    """A structural edit: the layer widgets are keyed by position, so they are re-initialised from the new spec."""
    st.session_state["spec"] = new
    for key in [k for k in st.session_state if str(k).startswith(("layer_", "spec_name", "spec_logit", "compact_"))]:
        del st.session_state[key]
    st.session_state["add_at"] = len(new.layers) + 1  # a new layer goes at the end unless the user says otherwise


def load_start() -> None:
    choice = st.session_state["start_from"]
    if choice != CURRENT:
        set_spec(specs.ModelSpec("custom") if choice == SCRATCH else presets.PRESETS[choice].spec)


def add_layer() -> None:
    layer = specs.LAYER_TYPES[st.session_state["add_type"]]()
    set_spec(specs.insert_layer(st.session_state["spec"], st.session_state["add_at"] - 1, layer))


def move(i: int, step: int) -> None:
    set_spec(specs.move_layer(st.session_state["spec"], i, step))


def remove(i: int) -> None:
    set_spec(specs.remove_layer(st.session_state["spec"], i))


def upload_spec() -> None:
    st.session_state.pop("upload_error", None)
    file = st.session_state.get("spec_upload")
    if file is not None:
        try:
            set_spec(spec_io.from_json(file.getvalue()))
            st.session_state["start_from"] = CURRENT  # "Start from" names what is now being edited
        except specs.SpecError as e:
            st.session_state["upload_error"] = f"The file was not loaded: {e}"


def apply_table() -> None:
    """The compact editor's rows (type, settings) become the stack; a bad row is a sentence and changes nothing."""
    try:
        layers = spec_io.layers_from_table(st.session_state["compact_rows"], st.session_state["compact_table"])
    except (specs.SpecError, TypeError, ValueError) as e:
        st.session_state["table_error"] = ui.sentence(str(e))
        return
    st.session_state.pop("table_error", None)
    set_spec(specs.replace(st.session_state["spec"], layers=layers))


def start_row(spec: specs.ModelSpec) -> None:
    """"Start from" (a preset, scratch or the model being edited), Load again, the preset's why, the upload."""
    st.session_state.setdefault("start_from", presets.preset_named(spec) or CURRENT)
    top = st.columns([2, 1, 3], vertical_alignment="bottom")
    top[0].selectbox("Start from", [CURRENT, *presets.PRESETS, SCRATCH], key="start_from", on_change=load_start,
                     format_func=lambda c: "scratch (an empty stack)" if c == SCRATCH else
                     "the model being edited" if c == CURRENT else f"preset {c}")
    top[1].button("Load again", key="load", on_click=load_start, help="Loads the chosen preset again, dropping edits.")
    if st.session_state["start_from"] in presets.PRESETS:
        top[2].caption(presets.PRESETS[st.session_state["start_from"]].why)
    with st.expander("Load a spec JSON file"):
        st.file_uploader("Spec JSON", type=["json"], key="spec_upload", on_change=upload_spec)
        if st.session_state.get("upload_error"):
            st.error(ui.md_escape(st.session_state["upload_error"]))


def field_widget(i: int, layer, name: str):
    key, value = f"layer_{i}_{name}", getattr(layer, name)
    if name in specs.FLOAT_RANGES:
        (low, high), (step, fmt) = specs.float_bounds(name), FLOAT_WIDGETS[name]
        if key not in st.session_state and value is not None:  # None: a box the user emptied, kept empty
            st.session_state[key] = min(max(float(value), low), high)
        return ui.number_input(name, value=None, step=step, format=fmt, key=key)
    st.session_state.setdefault(key, value)
    if name == "activation":
        return st.selectbox(name, specs.ACTIVATIONS, key=key)
    if name == "padding":
        return st.selectbox(name, specs.PADDINGS, key=key)
    if name == "kernel_initializer":
        return st.selectbox(name, specs.INITIALIZERS, key=key,
                            help="dirac: the first channels start as copies of the input (airbench).")
    if name in ("use_bias", "scale"):
        return st.checkbox(name, key=key)
    if name == "strides" and isinstance(layer, specs.MaxPooling2D):
        return ui.number_input(name, step=1, key=key, placeholder="= pool_size",
                               help="Empty means the same as pool_size, as in Keras.")
    # value=None: a box the user empties stays empty and is named as such; without it Streamlit put 0 back into
    # the box and the page said "got 0" of a number nobody typed.
    return ui.number_input(name, value=None, step=1, key=key)


def compact_table(spec: specs.ModelSpec) -> tuple[list, list]:
    """The compact editor, one row a layer; (the layers as they are, an empty slot for each layer's error)."""
    # Numbered from 1 in a column of its own, as the layer boxes and every message count layers: the table's own
    # index counted from 0.
    st.session_state["compact_rows"] = [{"#": n, **row} for n, row in enumerate(spec_io.table_rows(spec), 1)]
    st.data_editor(st.session_state["compact_rows"], key="compact_table", num_rows="dynamic", hide_index=True,
                   on_change=apply_table, width="stretch", column_config={
                       "#": st.column_config.NumberColumn("#", disabled=True, width=40),
                       "type": st.column_config.SelectboxColumn("layer", options=list(specs.LAYER_TYPES),
                                                                required=True),
                       "settings": st.column_config.TextColumn(  # a long header was cut off at 1400 px
                           "settings", width="large", help="name=value, ...; the settings not named keep their "
                                                            "defaults")})
    if st.session_state.get("table_error"):
        st.error(ui.md_escape(st.session_state["table_error"]))
    return list(spec.layers), [st.empty() for _ in spec.layers]


def layer_boxes(spec: specs.ModelSpec) -> tuple[list, list]:
    """One bordered box a layer: its name, move and remove buttons, a widget per field; (the layers as the widgets
    now say, a slot in each box for its error)."""
    layers, slots = [], []
    for i, layer in enumerate(spec.layers):
        with st.container(border=True):
            with st.container(horizontal=True, vertical_alignment="center"):  # stays one line on a phone
                st.markdown(f"**{i + 1}. {type(layer).__name__}**", width="stretch")
                st.button("↑", key=f"up_{i}", on_click=move, args=(i, -1), disabled=i == 0, help="Move up")
                st.button("↓", key=f"down_{i}", on_click=move, args=(i, 1), disabled=i == len(spec.layers) - 1,
                          help="Move down")
                st.button("✕", key=f"remove_{i}", on_click=remove, args=(i,), help="Remove")
            fields = [f.name for f in dataclasses.fields(layer)]
            values = {}
            # two to a row (three left a number box 30 px of text beside its buttons: 0.4 showed as "0."), a row of
            # columns per pair, so that on a phone, where columns stack, the fields keep their order
            for n, field_name in enumerate(fields):
                if n % 2 == 0:
                    columns = st.columns(2)
                with columns[n % 2]:
                    values[field_name] = field_widget(i, layer, field_name)
            slots.append(st.empty())
            layers.append(type(layer)(**values))
    return layers, slots


def add_row(spec: specs.ModelSpec) -> None:
    """Layer type, position (1-based; the end unless chosen) and Add layer."""
    add = st.columns([2, 1, 1], vertical_alignment="bottom")
    add[0].selectbox("Layer type", list(specs.LAYER_TYPES), key="add_type")
    positions = list(range(1, len(spec.layers) + 2))
    if st.session_state.get("add_at") not in positions:
        st.session_state["add_at"] = positions[-1]
    add[1].selectbox("At position", positions, key="add_at")
    add[2].button("Add layer", key="add", on_click=add_layer)


def totals(counts: dict) -> None:
    """The three tiles of a valid stack (shapes.stack_view's totals)."""
    tiles = st.columns(3)
    tiles[0].metric("Parameters", ui.compact(counts["params"]), help=f"{counts['params']:,}")
    tiles[1].metric("Non-trainable", ui.compact(counts["non_trainable_params"]),
                    help=f"{counts['non_trainable_params']:,}")
    tiles[2].metric("MACs per image", ui.compact(counts["macs"]), help=f"{counts['macs']:,} multiply-accumulates")


def tabs(spec: specs.ModelSpec, rows: list, counts: dict | None, bad_index: int | None, valid: bool) -> None:
    """Diagram, Shapes and Keras code; counts for a valid stack (None otherwise), code for a valid model."""
    diagram_tab, shapes_tab, code_tab = st.tabs(["Diagram", "Shapes", "Keras code"])
    with diagram_tab:
        # its own size, at most the column's: stretched, a stack of two layers had filled it in large type
        st.graphviz_chart(charts.network_dot(rows, spec.input_shape, bad_index=bad_index), width="content")
        st.caption("One box a layer with its output (height × width × channels): wider for more channels, taller for "
                   "a larger image.")
    with shapes_tab:
        st.dataframe(shapes.table(rows, counts), hide_index=True, key="stack_table", height="content",
                     column_config={"params": st.column_config.NumberColumn(format="localized"),
                                    "MACs": st.column_config.NumberColumn(format="localized")})
    with code_tab:
        if valid:
            st.code(builder.to_keras_source(spec), language="python")
            st.download_button("Download spec JSON", spec_io.to_json(spec), file_name=f"{ui.slug(spec.name)}.json",
                               mime="application/json", on_click="ignore", key="download_spec")
        else:
            st.caption("The Keras code appears once the model is valid.")
