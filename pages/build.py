"""Build: edit a ModelSpec layer by layer and see its shapes, parameters, MACs and Keras code as you go."""

import dataclasses

import streamlit as st

import ui
from cifar_core import builder, charts, presets, shapes, spec_io
from cifar_core import spec as specs

ui.through_router("pages/build.py")

SCRATCH = "scratch"
CURRENT = "current"
# The float fields' steps and formats; their bounds are the spec's own (specs.float_bounds), the integers'
# specs.INT_RANGES.
FLOAT_WIDGETS = {"momentum": (0.01, "%.4f"), "rate": (0.05, "%.3f"), "epsilon": (1e-4, "%.1e")}


def set_spec(new: specs.ModelSpec) -> None:
    """A structural edit: the layer widgets are keyed by position, so they are re-initialised from the new spec."""
    st.session_state["spec"] = new
    for key in [k for k in st.session_state if str(k).startswith(("layer_", "spec_name", "spec_logit", "compact_"))]:
        del st.session_state[key]
    st.session_state["add_at"] = len(new.layers) + 1  # a new layer goes at the end unless the user says otherwise


def edit_stack(change) -> None:
    stack = list(st.session_state["spec"].layers)
    change(stack)
    set_spec(specs.replace(st.session_state["spec"], layers=tuple(stack)))


def load_start() -> None:
    choice = st.session_state["start_from"]
    if choice != CURRENT:
        set_spec(specs.ModelSpec("custom") if choice == SCRATCH else presets.PRESETS[choice].spec)


def add_layer() -> None:
    layer = specs.LAYER_TYPES[st.session_state["add_type"]]()
    edit_stack(lambda stack: stack.insert(st.session_state["add_at"] - 1, layer))


def move(i: int, step: int) -> None:
    def swap(stack):
        stack[i], stack[i + step] = stack[i + step], stack[i]
    edit_stack(swap)


def upload_spec() -> None:
    st.session_state.pop("upload_error", None)
    file = st.session_state.get("spec_upload")
    if file is not None:
        try:
            set_spec(spec_io.from_json(file.getvalue()))
            st.session_state["start_from"] = CURRENT  # "Start from" names what is now being edited
        except specs.SpecError as e:
            st.session_state["upload_error"] = f"This spec cannot be loaded: {e}"


def apply_table() -> None:
    """The compact editor's rows (type, settings) become the stack; a bad row is a sentence and changes nothing."""
    edits, rows = st.session_state["compact_table"], list(st.session_state["compact_rows"])
    for i in sorted(edits.get("deleted_rows", []), reverse=True):
        rows.pop(i)
    for i, change in edits.get("edited_rows", {}).items():
        rows[int(i)] = {**rows[int(i)], **change}
    rows += [{"type": "Conv2D", "settings": "", **added} for added in edits.get("added_rows", [])]
    try:
        layers = tuple(spec_io.layer_from_settings(r["type"], r.get("settings"), n) for n, r in enumerate(rows, 1))
    except (specs.SpecError, TypeError) as e:
        st.session_state["table_error"] = ui.sentence(str(e))
        return
    st.session_state.pop("table_error", None)
    set_spec(specs.replace(st.session_state["spec"], layers=layers))


def field_widget(i: int, layer, name: str):
    key, value = f"layer_{i}_{name}", getattr(layer, name)
    if name in specs.FLOAT_RANGES:
        (low, high), (step, fmt) = specs.float_bounds(name), FLOAT_WIDGETS[name]
        st.session_state.setdefault(key, min(max(float(value), low), high))
        return float(st.number_input(name, low, high, step=step, format=fmt, key=key))
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
    low, high = specs.INT_RANGES[name]
    if name == "strides" and isinstance(layer, specs.MaxPooling2D):
        return st.number_input(name, low, high, step=1, key=key, placeholder="= pool_size",
                               help="Empty means the same as pool_size, as in Keras.")
    return int(st.number_input(name, low, high, step=1, key=key))


if "spec" not in st.session_state:
    st.session_state["spec"] = ui.load_draft(st.query_params.get("draft")) or presets.PRESETS["fast"].spec
spec = st.session_state["spec"]
st.title("Build a model")

start_options = [CURRENT, *presets.PRESETS, SCRATCH]
unchanged = spec.name in presets.PRESETS and spec == presets.PRESETS[spec.name].spec
st.session_state.setdefault("start_from", spec.name if unchanged else CURRENT)
top = st.columns([2, 1, 3], vertical_alignment="bottom")
top[0].selectbox("Start from", start_options, key="start_from", on_change=load_start,
                 format_func=lambda c: "scratch (an empty stack)" if c == SCRATCH else
                 "the model being edited" if c == CURRENT else f"preset {c}")
top[1].button("Load again", key="load", on_click=load_start, help="Loads the chosen preset again, dropping edits.")
if st.session_state["start_from"] in presets.PRESETS:
    top[2].caption(presets.PRESETS[st.session_state["start_from"]].why)
with st.expander("Load a spec JSON file"):
    st.file_uploader("Spec JSON", type=["json"], key="spec_upload", on_change=upload_spec)
    if st.session_state.get("upload_error"):
        st.error(ui.md_escape(st.session_state["upload_error"]))

summary, editor = st.columns(2, gap="large")  # the summary first: on a narrow screen it comes before the stack
with editor:
    st.session_state.setdefault("spec_name", spec.name)
    name = st.text_input("Model name", key="spec_name", max_chars=64)
    st.caption("Input: 32 × 32 × 3 images, rescaled from [0, 255] to [0, 1].")
    ui.kept("build_compact", False)
    compact = ui.keep_widget(st.toggle, "Compact table editor (one row a layer)", key="build_compact")
    new_layers, slots = [], []
    if compact:
        st.session_state["compact_rows"] = [{"type": type(layer).__name__, "settings": spec_io.layer_settings(layer)}
                                            for layer in spec.layers]
        st.data_editor(st.session_state["compact_rows"], key="compact_table", num_rows="dynamic", hide_index=False,
                       on_change=apply_table, width="stretch", column_config={
                           "type": st.column_config.SelectboxColumn("layer", options=list(specs.LAYER_TYPES),
                                                                    required=True),
                           "settings": st.column_config.TextColumn(
                               "settings (name=value, ...; others are defaults)", width="large")})
        if st.session_state.get("table_error"):
            st.error(ui.md_escape(st.session_state["table_error"]))
        new_layers, slots = list(spec.layers), [st.empty() for _ in spec.layers]
    for i, layer in enumerate([] if compact else spec.layers):
        with st.container(border=True):
            with st.container(horizontal=True, vertical_alignment="center"):  # stays one line on a phone
                st.markdown(f"**{i + 1}. {type(layer).__name__}**", width="stretch")
                st.button("↑", key=f"up_{i}", on_click=move, args=(i, -1), disabled=i == 0, help="Move up")
                st.button("↓", key=f"down_{i}", on_click=move, args=(i, 1), disabled=i == len(spec.layers) - 1,
                          help="Move down")
                st.button("✕", key=f"remove_{i}", on_click=edit_stack, args=(lambda s, i=i: s.pop(i),),
                          help="Remove")
            fields = [f.name for f in dataclasses.fields(layer)]
            values = {}
            columns = st.columns(3) if fields else []
            for n, field_name in enumerate(fields):
                with columns[n % 3]:
                    values[field_name] = field_widget(i, layer, field_name)
            slots.append(st.empty())
            new_layers.append(type(layer)(**values))
    st.session_state.setdefault("spec_logit_scale", float(spec.logit_scale))
    output = st.columns([2, 1], vertical_alignment="center")
    output[0].caption("Output: Dense(10), its logits × logit scale, then softmax; added automatically.")
    logit_scale = output[1].number_input("Logit scale", 1e-3, 10.0, step=0.1, format="%.4f", key="spec_logit_scale",
                                         help="airbench uses 1/9: smaller logits learn more gently.")
    general_slot = st.empty()
    add = st.columns([2, 1, 1], vertical_alignment="bottom")
    add[0].selectbox("Layer type", list(specs.LAYER_TYPES), key="add_type")
    positions = list(range(1, len(spec.layers) + 2))
    if st.session_state.get("add_at") not in positions:
        st.session_state["add_at"] = positions[-1]
    add[1].selectbox("At position", positions, key="add_at")
    add[2].button("Add layer", key="add", on_click=add_layer)

spec = specs.replace(spec, name=name, layers=tuple(new_layers), logit_scale=float(logit_scale))
st.session_state["spec"] = spec
st.query_params["draft"] = ui.save_draft(spec)  # a reload of this page keeps the model being edited
error = shapes.first_error(spec)
st.session_state["spec_valid"] = error is None
st.session_state["spec_error"] = error[1] if error else None
if error:
    index, message = error
    (slots[index - 1] if index and index <= len(slots) else general_slot).error(ui.sentence(message))

with summary:
    rows = shapes.infer_prefix(spec) if error else shapes.infer(spec)
    if error:
        st.warning("The model is not valid yet: the shapes below stop at the failing layer (in red), and the Keras "
                   "code appears once it is valid. The Train page will not start it.")
    else:
        totals = shapes.summary(spec)
        metrics = st.columns(3)
        metrics[0].metric("Parameters", ui.compact(totals["params"]), help=f"{totals['params']:,}")
        metrics[1].metric("Non-trainable", ui.compact(totals["non_trainable_params"]),
                          help=f"{totals['non_trainable_params']:,}")
        metrics[2].metric("MACs per image", ui.compact(totals["macs"]), help=f"{totals['macs']:,} multiply-accumulates")
    tabs = st.tabs(["Diagram", "Shapes", "Keras code"])
    with tabs[0]:
        st.graphviz_chart(charts.network_dot(rows, spec.input_shape, bad_index=error[0] if error else None),
                          width="stretch")
        st.caption("One box a layer with its output (height × width × channels): wider for more channels, taller for "
                   "a larger image.")
    with tabs[1]:
        table = [{"layer": f"{r.index}. {r.type}", "output shape": " × ".join(map(str, r.output_shape))
                  if r.output_shape else "✗ impossible", "params": r.params, "MACs": r.macs} for r in rows]
        if not error:
            table.append({"layer": "Total", "output shape": "", "params": totals["params"], "MACs": totals["macs"]})
        st.dataframe(table, hide_index=True, key="stack_table", height="content",
                     column_config={"params": st.column_config.NumberColumn(format="localized"),
                                    "MACs": st.column_config.NumberColumn(format="localized")})
    with tabs[2]:
        if not error:
            st.code(builder.to_keras_source(spec), language="python")
            st.download_button("Download spec JSON", spec_io.to_json(spec), file_name=f"{ui.slug(spec.name)}.json",
                               mime="application/json", on_click="ignore", key="download_spec")
