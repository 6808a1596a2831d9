"""Train: configure and start a training job, then watch, stop or resume it. The job is its own process; this page
only reads its run directory, so it re-attaches after navigation or a reload (?run=<id>)."""


import streamlit as st

import ui
from cifar_core import config as configs
from cifar_core import files, jobs, resizing, runs, shapes, sources
from cifar_core import spec as specs
from ui import data_picker
from ui import train as view

ui.through_router("pages/train.py")

st.title("Train")

# ---- a new run: what to train, and how
st.header("New run", divider="gray")
model_spec = view.model_picker()
base, prefix = view.starting_settings(model_spec)  # the preset's, or the run's that the Build model came from
problem = shapes.first_error(model_spec)
if problem:
    st.error(f"This model cannot be trained: {problem[1]} Fix it on the Build page.")

defaults = configs.to_dict(base)
values, run_name, source_choice = view.settings_form(prefix, defaults)
try:
    config = configs.config_from_dict({**defaults, **values, "data": str(values["data"] or "").strip()})
    if not problem:  # progressive resizing needs a network that takes smaller images
        resizing.check(model_spec, config)
except specs.SpecError as e:  # a setting wrong on its own is also named under its box (ui.setting_widget)
    marked = any(configs.setting_problem(name, value) for name, value in values.items())
    st.error("A setting is out of range: the message under its box says what it allows." if marked
             else ui.setting_error(e))
    problem = problem or (None, str(e))
    config = base
view.device_tiles(model_spec, config, trainable=not problem)
data_picker.data_note(source_choice, prefix + "data")

jobs.warm_up()  # a process with TensorFlow already imported, waiting for Start
if st.button("Start training", type="primary", key="start", disabled=problem is not None):
    try:
        run_id = jobs.start_job(model_spec, config, name=run_name.strip() or None)
    except (specs.SpecError, runs.RunError, OSError) as e:
        st.error(ui.setting_error(e))
    else:
        view.select_run(run_id, just_started=True)
        st.rerun()

# ---- this run: live while its job trains, its record afterwards
run_id = view.shown_run()
view.run_header()
if st.session_state.get("retrain_error"):
    st.error(st.session_state.pop("retrain_error"))
has_runs = view.run_picker(run_id)
if run_id is None:
    st.info("No run to show yet: start a training above" + (", or choose a run." if has_runs else "."))
    st.stop()
view.select_run(run_id)
view.monitor(run_id)

run_dir = runs.run_path(run_id)
status = runs.read_status(run_dir)
view.failure(status)
if status.get("failed_on") == "data":  # resuming would fail the same way: offer another data source
    view.retrain_box(run_dir)
elif status.get("state") in jobs.RESUMABLE_STATES:
    if st.button("Resume", key="resume"):
        try:
            jobs.resume_job(run_id, offered=sources.offered)
        except runs.RunError as e:
            st.error(ui.problem(e))
        else:
            st.rerun()
if status.get("state") in ("finished", "stopped") and files.is_regular(run_dir / "model.keras"):
    if st.button("Evaluate this model", icon=":material/analytics:", key="evaluate_this"):
        ui.open_page("pages/evaluate.py", ui.evaluation_request(run_id))
with st.expander("Job log"):
    st.code(sources.without_server_paths(runs.read_job_log(run_id)) or "(empty)", language=None)
