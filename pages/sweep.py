"""Sweep: a hyperparameter search as a form and a button. The sweep is an Optuna study run by its own process
(`python -m cifar_core sweep-worker`), so it outlives reruns; each trial is an ordinary run, queued behind any job.
This page defines the space, starts and stops the sweep, and reads the study: its trials, Optuna's figures, the
best trial."""

import streamlit as st

import ui
from cifar_core import config as configs
from cifar_core import jobs, presets, runs, sweeps
from cifar_core import spec as specs

ui.through_router("pages/sweep.py")

BUILD = "build"
RANGES = {  # entry: (label, default low, default high, log scale, on by default)
    "width": ("Width (× every Conv2D's filters)", 0.5, 2.0, True, True),
    "learning_rate": ("Learning rate", 3e-4, 1e-2, True, True),
    "weight_decay": ("Weight decay", 1e-5, 1e-2, True, False),
    "label_smoothing": ("Label smoothing", 0.0, 0.2, False, True),
    "dropout": ("Dropout rate (every Dropout layer)", 0.0, 0.6, False, True),
    "epochs": ("Epochs", 1, 5, False, False),
}

st.title("Sweep")
choices = ([BUILD] if "spec" in st.session_state else []) + list(presets.PRESETS)
choice = st.selectbox("Model", choices, index=choices.index("tiny"), key="sweep_model", format_func=lambda c: (
    f"from the Build page: {st.session_state['spec'].name}" if c == BUILD else f"preset {c}"))
model_spec = st.session_state["spec"] if choice == BUILD else presets.PRESETS[choice].spec
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
            lo = c[1].number_input("from", value=low, step=step, key=f"sweep_low_{key}", format=None if step else "%g")
            hi = c[2].number_input("to", value=high, step=step, key=f"sweep_high_{key}", format=None if step else "%g")
            space[key] = {"low": lo, "high": hi, "log": log}
    among = st.multiselect("Or also choose among presets", list(presets.PRESETS), key="sweep_presets")
    if among:
        space["preset"] = {"choices": among}
    c = st.columns(3)
    trials = c[0].number_input("Trials", 1, 1000, 10, key="sweep_trials")
    epochs = c[1].number_input("Epochs per trial", 1, 1000, presets.PRESETS.get(model_spec.name, presets.PRESETS[
        "tiny"]).train.epochs, key="sweep_epochs")
    limit = c[2].number_input("Limit training images (0: all)", 0, 1_000_000, 0, key="sweep_limit")

base = presets.PRESETS[model_spec.name].train if model_spec.name in presets.PRESETS else configs.TrainConfig()
if st.button("Start sweep", type="primary", key="sweep_start"):
    try:
        config = configs.config_from_dict({**configs.to_dict(configs.with_epochs(base, int(epochs))),
                                           "data": ui.data_source(), "limit": int(limit) or None})
        st.session_state["sweep_study"] = sweeps.start_sweep(model_spec, config, space, int(trials))
    except (specs.SpecError, runs.RunError, OSError) as e:
        st.error(ui.md_escape(str(e)))

studies = [s["study"] for s in sweeps.local_studies()]
if not studies:
    st.info("No sweep yet in this runs folder: define the space above and press Start sweep.")
    st.stop()
current = st.session_state.get("sweep_study")
study = st.selectbox("Study", studies, index=studies.index(current) if current in studies else 0, key="sweep_show")
storage = sweeps.default_storage()
running = sweeps.sweep_running(runs.default_runs_dir(), study)


@st.cache_data(max_entries=8, show_spinner=False)
def figures(storage_url: str, study_name: str, finished: int) -> dict:
    """Optuna's figures, drawn again only when a trial has finished (importances fit a forest each time)."""
    return sweeps.figures(storage_url, study_name)


@st.fragment(run_every=2.0 if running else None)
def progress() -> None:
    jobs.start_next()
    alive = sweeps.sweep_running(runs.default_runs_dir(), study)
    if running and not alive:
        st.rerun()
    try:
        summary = sweeps.summary(storage, study)
    except specs.SpecError as e:
        st.error(ui.md_escape(str(e)))
        return
    done = sum(t["state"] in ("COMPLETE", "PRUNED", "FAIL") for t in summary["trials"])
    st.subheader(f"{ui.md_escape(study)}: {'running' if alive else 'not running'}, {done}/"
                 f"{summary['trials_wanted']} trials")
    if alive and st.button("Stop sweep", key="sweep_stop"):
        sweeps.stop_sweep(runs.default_runs_dir(), study)
        st.toast("Stopping: the trial under way stops after its batch.")
    st.dataframe([{"trial": t["number"], "state": t["state"], "validation accuracy": t["value"],
                   "seconds": t["seconds"], **{f"param {k}": v for k, v in t["params"].items()},
                   "run": t["run_dir"]} for t in summary["trials"]], hide_index=True, key="sweep_table")
    for name, figure in figures(storage, study, done).items():
        st.plotly_chart(figure, key=f"sweep_fig_{name}")
    best = summary["best"]
    if best and best["run_dir"]:
        st.markdown(f"Best: trial {best['number']}, validation accuracy {best['value']:.1%}")
        c = st.columns(2)
        run_id = best["run_dir"].rstrip("/").rsplit("/", 1)[-1]
        for column, (label, page) in zip(c, (("Build", "pages/build.py"), ("Train", "pages/train.py"))):
            if column.button(f"Open the best trial in {label}", key=f"sweep_open_{label.lower()}"):
                try:
                    st.session_state["spec"] = runs.read_spec_and_config(runs.run_path(run_id))[0]
                except runs.RunError as e:  # trained by a worker on another machine, or deleted since
                    st.error(ui.md_escape(str(e)))
                    return
                if page == "pages/train.py":
                    st.session_state["train_run"] = run_id
                st.switch_page(page)

progress()
