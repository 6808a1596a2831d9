"""The Sweep page's Streamlit pieces: the search-space form, Optuna's figures cached per finished trial, and the
study's progress as a polling fragment (trials table, figures, the best trial opened in Build or Train)."""

from __future__ import annotations

import re

import streamlit as st

import ui
from cifar_core import config as configs
from cifar_core import jobs, presets, runs, sources, studies, sweeps
from cifar_core import space as space_checks
from cifar_core import spec as specs
from ui import data_picker
from ui.train import BUILD

RANGES = {  # entry: (label, default low, default high, log scale, on by default)
    "width": ("Width (× every Conv2D's filters)", 0.5, 2.0, True, True),
    "learning_rate": ("Learning rate", 3e-4, 1e-2, True, True),
    "weight_decay": ("Weight decay", 1e-5, 1e-2, True, False),
    "label_smoothing": ("Label smoothing", 0.0, 0.2, False, True),
    "dropout": ("Dropout rate (every Dropout layer)", 0.0, 0.6, False, True),
    "epochs": ("Epochs", 1, 5, False, False),
}


def search_form(model_spec: specs.ModelSpec) -> tuple[dict | None, int | None, int | None, int | None, str, bool]:
    """The bordered form: which ranges to search (dropout only for a model with Dropout layers), presets to choose
    among, trials, epochs per trial, training-image limit, data source (the sidebar's until one is chosen here).
    Returns (space, trials, epochs, limit, source choice, ready): ready is False when a range or a box is wrong, and
    a sentence under it says which."""
    has_dropout = any(isinstance(layer, specs.Dropout) for layer in model_spec.layers)
    space = {}
    with st.container(border=True):
        st.markdown("**Search space**: Optuna's TPE sampler picks each trial's values in these ranges; the median "
                    "pruner stops trials whose validation accuracy falls behind.")
        for key, (label, low, high, log, on) in RANGES.items():
            if key == "dropout" and not has_dropout:
                continue
            c = st.columns([2, 1, 1])
            if c[0].checkbox(label, value=on, key=f"sweep_on_{key}"):
                step = 1 if key == "epochs" else None
                with c[1]:
                    lo = ui.number_input("from", value=low, step=step, key=f"sweep_low_{key}",
                                         format=None if step else "%g")
                with c[2]:
                    hi = ui.number_input("to", value=high, step=step, key=f"sweep_high_{key}",
                                         format=None if step else "%g")
                space[key] = {"low": lo, "high": hi, "log": log}
        among = st.multiselect("Or also choose among presets", list(presets.PRESETS), key="sweep_presets")
        if among:
            space["preset"] = {"choices": among}
        try:  # checked as they are typed, and said under them, not only once Start is pressed
            if not space:
                raise space_checks.SweepError("Choose at least one range or preset to search.")
            space = space_checks.check_space(space, model_spec)
        except space_checks.SweepError as e:
            st.error(range_error(e))
            space = None
        c = st.columns(4)
        preset_epochs = presets.PRESETS.get(model_spec.name, presets.PRESETS["tiny"]).train.epochs
        with c[0]:
            trials = ui.bounded_number("Trials", 1, sweeps.MAX_TRIALS, 10, key="sweep_trials")
        with c[1]:
            # The Epochs range, when on, sets each trial's epochs: this box then says so and takes no part (its own
            # value unchecked: a wrong one had stood under a box nobody could edit, and kept Start disabled).
            if st.session_state.get("sweep_on_epochs", False):
                ui.number_input("Epochs per trial", value=None, placeholder="from the range", key="sweep_epochs_off",
                                disabled=True, help="Each trial's epochs come from the Epochs range above.")
                epochs = preset_epochs
            else:
                epochs = ui.bounded_number("Epochs per trial", *configs.bounds("epochs"), preset_epochs,
                                           key="sweep_epochs", help="Every trial trains this many epochs.")
        with c[2]:
            # TrainConfig's own field, as on the Train page: empty trains on all images.
            limit = ui.setting_widget("limit", "sweep_limit", None)
        with c[3]:  # what the trials train on, said on the page as Train says it (it had been the sidebar's, unsaid)
            choice = data_picker.source_picker("sweep_source", data_picker.data_choice(), follow=True)
    ready = space is not None and None not in (trials, epochs) and not configs.setting_problem("limit", limit)
    return space, trials, epochs, limit, choice, ready


def range_error(error) -> str:
    """The engine's sentence about a range, with the range named as the form names it: "The search space's width"
    (the JSON's key) becomes "The range 'Width (× every Conv2D's filters)'", its low and high 'from' and 'to'."""
    def named(match):
        key = match.group(1)
        return f"The range '{RANGES[key][0]}'" if key in RANGES else match.group(0)
    text = re.sub(r"The search space's (\w+)", named, str(error))
    # and its bounds as the form's boxes name them: 'from' and 'to', the JSON's low and high
    return ui.md_escape(re.sub(r"\blow\b", "'from'", re.sub(r"\bhigh\b", "'to'", text)))


@st.cache_data(max_entries=8, show_spinner=False)
def figures(storage_url: str, study_name: str, finished: int) -> dict:
    """Optuna's figures, drawn again only when a trial has finished (importances fit a forest each time), their axes
    named as the form names the settings, without its notes in brackets (long names overlapped on a phone)."""
    names = {key: label.split(" (")[0] for key, (label, *_) in RANGES.items()} | {"preset": "Preset"}
    return studies.figures(storage_url, study_name, names)


FEW_TRIALS = 10  # below it, a forest fitted to the trials says little about which setting mattered


def progress(study: str) -> None:
    """The study's state, trials, figures and best trial; polled every 2 s while its worker runs. The fragment is
    made on every run of the page, so that whether it polls follows the worker."""
    storage = studies.default_storage()
    running = sweeps.sweep_running(runs.default_runs_dir(), study)
    st.fragment(_progress, run_every=2.0 if running else None)(study, storage, running)


def _progress(study: str, storage: str, running: bool) -> None:
    jobs.start_next(offered=sources.offered)
    alive = sweeps.sweep_running(runs.default_runs_dir(), study)
    if running and not alive:
        st.rerun()
    try:
        summary = studies.summary(storage, study)
    except specs.SpecError as e:
        st.error(ui.problem(e))
        return
    done = studies.trials_done(summary)
    state = "running" if alive else "finished" if done >= (summary["trials_wanted"] or 0) else "stopped"
    st.subheader(f"{ui.md_escape(study)}: {state}, {done}/{summary['trials_wanted'] or '?'} trials")
    if alive and st.button("Stop sweep", key="sweep_stop"):
        sweeps.stop_sweep(runs.default_runs_dir(), study)
        st.toast("Stopping: the trial under way stops after its batch.")
    rows = ui.rounded(studies.trial_rows(summary), ("validation accuracy",))
    for row in rows:  # a trial's reason is its run's error, which may name a server path
        if row.get("why it failed"):
            row["why it failed"] = sources.without_server_paths(row["why it failed"])
    named = {f"param {key}": st.column_config.NumberColumn(label, format="%g")  # 0.000737, not 0.0007
             for key, (label, *_) in RANGES.items()} | {"param preset": "Preset"}
    st.dataframe(rows, hide_index=True, key="sweep_table", column_config={
        "validation accuracy": ui.percent_column(), "seconds": st.column_config.NumberColumn(
            "trial time (s)", format="%.1f", help="From the trial's start to its end, with any wait behind other "
            "training, the job's start-up, the data's loading and the final evaluation (the Runs page's train time "
            "counts the epochs alone)."),
        **{column: config for column, config in named.items() if any(column in row for row in rows)}})
    shown = figures(storage, study, done)
    if not shown:
        st.caption("Optuna's figures (the search's history, its parallel coordinates) appear once a trial is "
                   "complete.")
    complete = sum(t["state"] == "COMPLETE" and t["value"] is not None for t in summary["trials"])
    for name, figure in shown.items():
        st.plotly_chart(figure, key=f"sweep_fig_{name}")
        if name == "importances" and complete < FEW_TRIALS:  # Optuna draws them from two trials on, unsaid
            st.caption(f"Estimated from {complete} complete trials: with fewer than {FEW_TRIALS}, which setting "
                       "mattered most is little more than a guess.")
    best_trial(summary)


def best_trial(summary: dict) -> None:
    """The best trial's accuracy and two buttons that open its model in Build, or its run in Train."""
    run_id = studies.best_run_id(summary)
    if run_id is None:
        return
    st.markdown(f"Best: trial {summary['best']['number']}, validation accuracy {summary['best']['value']:.1%}")
    c = st.columns(2)
    for column, (label, page) in zip(c, (("Build", "pages/build.py"), ("Train", "pages/train.py"))):
        if column.button(f"Open the best trial in {label}", key=f"sweep_open_{label.lower()}"):
            try:
                spec, config = runs.read_spec_and_config(runs.run_path(run_id))
            except runs.RunError as e:  # trained by a worker on another machine, or deleted since
                st.error(ui.problem(e))
                return
            st.session_state["spec"] = spec
            st.session_state["spec_settings"] = (spec, config, run_id)  # Train starts from the trial's settings
            if page == "pages/train.py":
                st.session_state["train_run"] = run_id
                ui.open_page(page, {"train_model": BUILD})
            st.switch_page(page)
