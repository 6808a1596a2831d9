"""The Runs page's Streamlit pieces: the runs table with its selection, the overlaid curves, managing one run
(downloads, rename, delete), the queue as a polling fragment, and what changed between two runs.

Not named ui/runs.py: a submodule becomes an attribute of its package, so ui.runs would be cifar_core.runs (which
ui/__init__.py imports) until this module was imported, and this module afterwards.
"""

from __future__ import annotations

import hashlib

import streamlit as st

import ui
from cifar_core import charts, compare, files, jobs, metrics, models, runs, sources
from ui.sweep import RANGES

METRICS = {"val_accuracy": "validation accuracy", "val_loss": "validation loss", "accuracy": "training accuracy",
           "loss": "training loss"}


def table_key(rows: list[dict]) -> str:
    """The table's key, new whenever its runs change: its selection is of row positions, so after a delete (or a new
    run on top) the ticks had moved onto other runs, and the curves compared runs nobody picked."""
    return "runs_table_" + hashlib.sha256("/".join(r["run_id"] for r in rows).encode()).hexdigest()[:12]


def table(rows: list[dict]) -> list[dict]:
    """The table of every run; returns the rows the user selected in it."""
    shown = ui.rounded(runs.table_rows(rows), ("best val accuracy", "last val accuracy"))
    event = st.dataframe(shown, hide_index=True, on_select="rerun", selection_mode="multi-row",
                         key=table_key(rows),
                         column_config={"params": st.column_config.NumberColumn(format="localized"),
                                        "best val accuracy": ui.percent_column(),
                                        "last val accuracy": ui.percent_column("The last epoch's: the saved model's"),
                                        "train time (s)": st.column_config.NumberColumn(format="%.0f"),
                                        # wide enough for a whole id (it was cut to "2026120…" at 1400 px)
                                        "run id": st.column_config.TextColumn(width=240)})
    return [rows[i] for i in event.selection.rows if i < len(rows)]


def curves(selected: list[dict]) -> None:
    """The selected runs' curves of one metric, overlaid."""
    if selected:
        key = st.selectbox("Metric", list(METRICS), format_func=METRICS.get, key="runs_metric")
        overlaid = {ui.run_title(r["run_id"]): metrics.read_metrics(runs.run_path(r["run_id"])) for r in selected}
        st.plotly_chart(charts.overlay_curves(overlaid, key), key="runs_overlay")
    else:
        st.caption("Select rows in the table to overlay their curves.")


def manage(rows: list[dict], selected: list[dict]) -> None:
    """One run (the first selected, else the newest): download its model and config, rename it, delete it."""
    ids = [r["run_id"] for r in rows]
    default = ids.index(selected[0]["run_id"]) if selected else 0
    # keyed by the default, so that selecting another row in the table picks that run here
    run_id = ui.run_select("Run", ids, ids[default], key=f"runs_manage_{default}")
    run_dir = runs.run_path(run_id)
    row = rows[ids.index(run_id)]
    if row["problem"]:
        unusable = row["state"] == "unreadable"  # its config.json: else a status or metrics file only
        st.warning(ui.md_escape(f"This run cannot be used: {row['problem']} It can still be renamed or deleted."
                                if unusable else f"Part of this run cannot be read: {row['problem']}"))

    c = st.columns(2)
    with c[0]:
        if row["has_model"]:
            # Bounded reads of regular files only (files.read_bytes): a named pipe in the run would hang the server.
            st.download_button("Download model.keras",
                               lambda: files.read_bytes(run_dir / "model.keras", models.MAX_MODEL_UNPACKED_BYTES),
                               file_name=f"{run_id}.keras", mime="application/octet-stream", on_click="ignore",
                               key="download_model")
        else:
            st.caption("This run has no saved model yet.")
        if files.is_regular(run_dir / "config.json"):  # a link is not followed: it could serve any file
            st.download_button("Download config.json",
                               lambda: files.read_bytes(run_dir / "config.json", files.MAX_JSON_BYTES),
                               file_name=f"{run_id}-config.json", mime="application/json", on_click="ignore",
                               key="download_config")
    with c[1]:
        label = st.text_input("Name", value=row["name"], key=f"runs_label_{run_id}", max_chars=80)
        if st.button("Rename", key="rename"):
            try:
                runs.rename_run(run_dir, label)
            except (runs.RunError, OSError) as e:
                st.error(ui.problem(e))
            else:
                ui.toast_after_rerun(f"Renamed to {ui.md_escape(runs.check_run_name(label))}.")
                st.rerun()

    title = ui.run_title(run_id)
    # labelled by the run, so that after a deletion the box of the run shown next starts closed
    with st.expander(f"Delete {ui.md_escape(title)}"):  # a label is Markdown: a name may hold a link or an image
        st.text(f"Deletes the run {title} with its model, curves and logs. This cannot be undone.")
        sure = st.checkbox("Yes, delete it", key=f"runs_confirm_{run_id}")
        if st.button("Delete", type="primary", key="delete", disabled=not sure):
            try:
                runs.delete_run(run_dir)
            except runs.RunError as e:
                st.error(ui.problem(e))
            else:
                st.session_state.pop("train_run", None)
                ui.toast_after_rerun(f"Deleted {ui.md_escape(title)}.")
                st.rerun()


def _waiting() -> None:
    # a job killed outright cannot start the run queued behind it; the page does, if it offers its data source
    jobs.start_next(offered=sources.offered)
    waiting = jobs.queued_runs()
    if waiting:
        st.subheader("Queue")
    for r in waiting:
        st.markdown(f"**{ui.md_escape(ui.run_title(r['run_id']))}**")
        if ui.queue_controls(r["run_id"], "runs_queue"):
            st.rerun()


def queue() -> None:
    """The runs waiting for the job ahead of them, with their controls; polled every 2 s while any waits. The
    fragment is made on every run of the page, so that whether it polls follows the queue."""
    st.fragment(_waiting, run_every=2.0 if jobs.queued_runs() else None)()


def what_changed(rows: list[dict], selected: list[dict]) -> None:
    """Two runs (the first two selected, else the two newest) compared: sweep parameters, model, settings, final
    metrics and one curve of both."""
    ids = [r["run_id"] for r in rows]
    a, b = compare.default_pair(ids, [r["run_id"] for r in selected])
    c = st.columns(2)
    with c[0]:
        first = ui.run_select("Run A", ids, a, key="runs_cmp_a")
    with c[1]:
        second = ui.run_select("Run B", ids, b, key="runs_cmp_b", other=first)
    if first == second:
        st.caption("Pick two different runs (or select two rows in the table).")
        return
    diff = compare.compare_runs(runs.run_path(first), runs.run_path(second))
    if diff["sweep"]:
        st.markdown(f"Trials {diff['sweep']['trials'][0]} and {diff['sweep']['trials'][1]} of the sweep "
                    f"**{ui.md_escape(str(diff['sweep']['study']))}**")
        # named in the Sweep form's words, not Optuna's parameter names
        named = [{**r, "field": RANGES.get(r["field"], (r["field"],))[0]} for r in diff["sweep"]["params"]]
        st.dataframe(ui.diff_table(named, "parameter"), hide_index=True, key="runs_cmp_params")
    st.markdown("**Model**")
    if diff["spec"]:
        st.dataframe(ui.diff_table(diff["spec"], "field", where=True), hide_index=True, key="runs_cmp_spec")
    else:
        st.caption("The same model, layer for layer.")
    st.markdown("**Training settings**")
    if diff["train"]:
        st.dataframe(ui.diff_table(diff["train"], "setting"), hide_index=True, key="runs_cmp_train")
    else:
        st.caption("The same training settings.")
    st.markdown("**Final metrics**")
    st.dataframe(compare.metrics_rows(diff), hide_index=True, key="runs_cmp_metrics")
    key = st.selectbox("Curve", list(METRICS), format_func=METRICS.get, key="runs_cmp_metric")
    st.plotly_chart(charts.overlay_curves({f"A: {ui.run_title(first)}": metrics.read_metrics(runs.run_path(first)),
                                           f"B: {ui.run_title(second)}": metrics.read_metrics(runs.run_path(second))},
                                          key), key="runs_cmp_curves")
