"""Train: configure and start a training job, then watch, stop or resume it. The job is its own process; this page
only reads its run directory, so it re-attaches after navigation or a reload (?run=<id>)."""


import streamlit as st

import ui
from cifar_core import charts, data, jobs, metrics, presets, runs, shapes, sources, train
from cifar_core import config as configs
from cifar_core import spec as specs

ui.through_router("pages/train.py")

BUILD = "build"
RESUMABLE = ("stopped", "interrupted", "failed")


def select_run(run_id: str | None) -> None:
    st.session_state["train_run"] = run_id
    if run_id:
        st.query_params["run"] = run_id


def shown_run() -> str | None:
    """The run this page shows: the one selected in this session, else ?run=, else the job training now."""
    for run_id in (st.session_state.get("train_run"), st.query_params.get("run")):
        try:
            if run_id and (runs.run_path(run_id) / "status.json").exists():
                return run_id
        except runs.RunError:
            pass
    active = jobs.active_job()
    return active["run_id"] if active else None


def retrain_on(run_dir, key: str) -> None:
    """A run that failed on its data: the same model and settings, trained as a new run on the chosen source."""
    try:
        model_spec, config = runs.read_spec_and_config(run_dir)
        source = sources.app_source(st.session_state[key])
        config = configs.config_from_dict({**configs.to_dict(config), "data": source})
        select_run(jobs.start_job(model_spec, config, name=runs.run_label(run_dir)))
    except (specs.SpecError, runs.RunError, data.DataError, OSError) as e:
        st.session_state["retrain_error"] = str(e)


st.title("Train")

# ---- a new run: what to train, and how
st.header("New run", divider="gray")
choices = ([BUILD] if "spec" in st.session_state else []) + list(presets.PRESETS)
if ui.kept("train_model", choices[0]) not in choices:
    st.session_state["train_model"] = choices[0]
choice = ui.keep_widget(st.selectbox, "Model", choices, key="train_model", format_func=lambda c: (
    f"from the Build page: {st.session_state['spec'].name}" if c == BUILD else f"preset {c}"))
model_spec = st.session_state["spec"] if choice == BUILD else presets.PRESETS[choice].spec
base = presets.PRESETS[model_spec.name].train if model_spec.name in presets.PRESETS else configs.TrainConfig()
problem = shapes.first_error(model_spec)
if problem:
    st.error(f"This model cannot be trained: {problem[1]} Fix it on the Build page.")

prefix = f"tc_{ui.slug(model_spec.name)}_"  # settings start from the model's preset and follow the model
defaults = configs.to_dict(base)
shown = [n for n in configs.FIELDS if configs.FIELDS[n].metadata["group"] == "basic"]
values = {}
with st.container(border=True):
    # Filled column by column, so that on a phone, where the columns stack, the fields keep their order.
    columns, per_column = st.columns(4), -(-(len(shown) + 1) // 4)
    for n, name in enumerate(shown):
        with columns[n // per_column]:
            if name == "data":  # only what this server offers (sources.app_sources), never a typed path
                source_choice = ui.source_picker(prefix + name, ui.data_choice(), label=configs.label(name))
                values[name] = sources.app_source(source_choice)
            else:
                values[name] = ui.setting_widget(name, prefix + name, defaults[name])
    ui.kept("train_name", "")
    run_name = columns[-1].text_input("Run name (optional)", key="train_name", max_chars=80)
    ui.keep("train_name")
    with st.expander("More (the fast presets' airbench recipe)"):
        recipe = [n for n in configs.FIELDS if configs.FIELDS[n].metadata["group"] == "recipe"]
        columns, per_column = st.columns(3), -(-len(recipe) // 3)
        for n, name in enumerate(recipe):
            with columns[n // per_column]:
                values[name] = ui.setting_widget(name, prefix + name, defaults[name])
try:
    config = configs.config_from_dict({**defaults, **values, "data": str(values["data"] or "").strip()})
except specs.SpecError as e:
    st.error(ui.md_escape(str(e)))
    problem = problem or (None, str(e))
    config = base

info = ui.device()
images = data.train_images_hint(config.data or None, config.limit)
speed, measured_runs = train.measured_speed(info["device"])
per_epoch = train.estimate_epoch_seconds(model_spec, images, speed) if images and not problem else None
c = st.columns(3)
c[0].metric("Device", info["device"].split(" (")[0], help=info["device"])
c[1].metric("Precision", info["precision"] if config.precision == "auto" else config.precision)
basis = (f"scaled by the speed this device showed in its last {measured_runs} run(s)" if measured_runs else
         "fitted to another machine until a run on this device has measured its own speed")
c[2].metric("Time per epoch (estimate)", ui.duration(per_epoch) if per_epoch else "unknown",
            help=f"{images or '?'} images x (a fixed cost per image + a cost per multiply-accumulate), {basis}.")
ui.data_note(source_choice, prefix + "data")

jobs.warm_up()  # a process with TensorFlow already imported, waiting for Start
if st.button("Start training", type="primary", key="start", disabled=problem is not None):
    try:
        run_id = jobs.start_job(model_spec, config, name=run_name.strip() or None)
    except (specs.SpecError, runs.RunError, OSError) as e:
        st.error(ui.md_escape(str(e)))
    else:
        select_run(run_id)
        st.rerun()

# ---- this run: live while its job trains, its record afterwards
run_id = shown_run()
st.header("This run", divider="gray")
if st.session_state.get("retrain_error"):
    st.error(ui.md_escape(st.session_state.pop("retrain_error")))
listed = [r["run_id"] for r in runs.list_runs()]
if listed:
    picked = st.selectbox("Run", listed, index=listed.index(run_id) if run_id in listed else None,
                          key=f"train_show_{run_id}", placeholder="choose a run to show",
                          format_func=ui.run_title)
    if picked and picked != run_id:
        select_run(picked)
        st.rerun()
if run_id is None:
    st.info("No run to show yet: start a training above" + (", or choose a run." if listed else "."))
    st.stop()
select_run(run_id)
run_dir = runs.run_path(run_id)
initial_state = runs.read_status(run_dir).get("state")
live = initial_state in (*runs.LIVE_STATES, "queued")


@st.fragment(run_every=1.0 if live else None)
def monitor() -> None:
    jobs.start_next()  # a job killed outright cannot start the run queued behind it; the page does
    status = runs.read_status(run_dir)
    state = status.get("state", "unknown")
    if live and state not in (*runs.LIVE_STATES, "queued") or (state == "queued") != (initial_state == "queued"):
        st.rerun()  # the job ended (or the queued run started): redraw the whole page (Resume button, final numbers)
    progress = jobs.job_progress(status)
    st.subheader(f"{ui.md_escape(runs.run_label(run_dir))}: {jobs.queue_label(run_id) if state == 'queued' else state}")
    st.caption(ui.run_settings(run_dir))
    if state == "queued" and ui.queue_controls(run_id, "train_queue"):
        if not run_dir.exists():  # cancelled: show the job training now instead
            st.session_state.pop("train_run", None)
            st.query_params.pop("run", None)
        st.rerun()
    steps = status.get("steps_per_epoch")
    # A resumed job redoes its partial epoch; the bar holds its furthest point rather than jump back.
    seen = st.session_state.setdefault("train_progress", {})
    fraction = max(progress["fraction"], seen.get(run_id, 0.0)) if state in runs.LIVE_STATES else progress["fraction"]
    seen[run_id] = fraction
    epoch, step = status.get("epoch", 0), status.get("step", 0)
    st.progress(fraction, text=f"epoch {epoch}/{status.get('epochs', '?')}, step {step}/{steps}"
                if steps and step else f"{epoch} of {status.get('epochs', '?')} epochs done")
    c = st.columns(3)
    c[0].metric("Elapsed", ui.duration(progress["elapsed_s"]))
    c[1].metric("Remaining (estimate)", ui.duration(progress["remaining_s"]) if state in runs.LIVE_STATES else "–")
    epoch_rows = [r for r in metrics.read_metrics(run_dir) if r.get("kind") == "epoch"]
    best = max((r["val_accuracy"] for r in epoch_rows if r.get("val_accuracy") is not None), default=None)
    c[2].metric("Best validation accuracy", f"{best:.1%}" if best is not None else "–")
    if state in runs.LIVE_STATES and st.button("Stop", key="stop"):
        with st.spinner("Stopping: the job finishes its batch and saves its model…"):
            jobs.stop_job(run_id)
        st.rerun()
    st.plotly_chart(charts.training_curves(metrics.read_metrics(run_dir), steps), key="curves")


monitor()
status = runs.read_status(run_dir)
if status.get("state") == "failed":
    st.error("The training failed: " + ui.md_escape(status.get("error") or "no reason was recorded."))
if status.get("failed_on") == "data":  # resuming would fail the same way: offer another data source
    with st.container(border=True):
        st.markdown("**Change the data source** and train this model again as a new run:")
        row = st.columns([3, 1], vertical_alignment="bottom")
        with row[0]:
            ui.source_picker("retrain_source", "sample")
        row[1].button("Train on this data", key="retrain", type="primary", on_click=retrain_on,
                      args=(run_dir, "retrain_source"))
elif status.get("state") in RESUMABLE:
    if st.button("Resume", key="resume"):
        try:
            jobs.resume_job(run_id)
        except runs.RunError as e:
            st.error(ui.md_escape(str(e)))
        else:
            st.rerun()
if status.get("state") == "finished":
    st.page_link("pages/evaluate.py", label="Evaluate this model", icon=":material/analytics:")
with st.expander("Job log"):
    st.code(jobs.read_job_log(run_id) or "(empty)", language=None)
