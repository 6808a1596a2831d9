"""The Train page's Streamlit pieces: which run it shows (?run=, the session's choice, the job training now), the
New run form (model, settings, the device and time tiles), the live monitor of a run (a fragment that polls its
run directory) and the Change the data source box of a run that failed on its data."""

import streamlit as st

import ui
from cifar_core import charts, data, estimate, jobs, metrics, presets, progress, runs, sources
from cifar_core import config as configs
from cifar_core import spec as specs
from ui import data_picker, model_cache

BUILD = "build"


def select_run(run_id: str | None, just_started: bool = False) -> None:
    """Shows run_id on this page (and in its URL); just started, the next run of the page scrolls to it and empties
    the run name box (kept, it had named the next run the same)."""
    st.session_state["train_run"] = run_id
    if run_id:
        st.query_params["run"] = run_id
    if just_started:
        st.session_state["just_started"] = run_id
        st.session_state["clear_train_name"] = True


def failure(status: dict) -> None:
    """A failed run's reason, without the server's folders (a missing dataset's message names its path)."""
    if status.get("state") == "failed":
        st.error("The training failed: " + ui.problem(status.get("error") or "no reason was recorded."))


def shown_run() -> str | None:
    """The run this page shows: the one selected in this session, else ?run=, else the job training now."""
    return jobs.shown_run((st.session_state.get("train_run"), st.query_params.get("run")))


def retrain_on(run_dir, key: str) -> None:
    """A run that failed on its data: the same model and settings, trained as a new run on the chosen source."""
    try:
        select_run(jobs.retrain(run_dir, sources.app_source(st.session_state[key])))
    except (specs.SpecError, runs.RunError, data.DataError, OSError) as e:
        st.session_state["retrain_error"] = ui.problem(e)  # shown after the rerun, as every engine message is


def model_picker() -> specs.ModelSpec:
    """The Build page's model (when there is one) or a preset (tiny first: a minute on the sample, the README's
    walk-through), its choice kept across pages."""
    choices = ([BUILD] if "spec" in st.session_state else []) + list(presets.PRESETS)
    first = BUILD if BUILD in choices else "tiny"
    choice = st.selectbox("Model", choices, choices.index(first), key="train_model", **ui.KEEP,
                          format_func=lambda c: f"from the Build page: {st.session_state['spec'].name}" if c == BUILD
                          else f"preset {c}")
    return st.session_state["spec"] if choice == BUILD else presets.PRESETS[choice].spec


def starting_settings(model_spec: specs.ModelSpec) -> tuple[configs.TrainConfig, str]:
    """The settings a model starts from, and the key prefix of their widgets (settings follow the model): the run's
    own when the Build page's model was opened from a run (a sweep's best trial), else its preset's
    (presets.train_config_for)."""
    opened = st.session_state.get("spec_settings")
    if st.session_state.get("train_model") == BUILD and opened and opened[0] == model_spec:
        return opened[1], f"tc_{ui.slug(model_spec.name)}_{ui.slug(opened[2])}_"
    return presets.train_config_for(model_spec), f"tc_{ui.slug(model_spec.name)}_"


def settings_form(prefix: str, defaults: dict) -> tuple[dict, str, str]:
    """The basic settings in four columns, the run name, the recipe's in an expander; (the settings' values, the
    run name, the data source chosen as sources.app_sources names it)."""
    shown, values = configs.fields_in("basic"), {}
    with st.container(border=True):
        # Filled column by column, so that on a phone, where the columns stack, the fields keep their order.
        columns, per_column = st.columns(4), -(-(len(shown) + 1) // 4)
        for n, name in enumerate(shown):
            with columns[n // per_column]:
                if name == "data":  # only what this server offers (sources.app_sources), never a typed path
                    source_choice = data_picker.source_picker(prefix + name, data_picker.data_choice(),
                                                              label=configs.label(name), follow=True)
                    values[name] = sources.app_source(source_choice)
                else:
                    values[name] = ui.setting_widget(name, prefix + name, defaults[name])
        if st.session_state.pop("clear_train_name", False):  # before the box: a widget's state is set only so
            st.session_state["train_name"] = ""
        run_name = columns[-1].text_input("Run name (optional)", key="train_name", max_chars=80,
                                          **ui.KEEP)
        with st.expander("More (the fast presets' airbench recipe)"):
            recipe = configs.fields_in("recipe")
            columns, per_column = st.columns(3), -(-len(recipe) // 3)
            for n, name in enumerate(recipe):
                with columns[n // per_column]:
                    values[name] = ui.setting_widget(name, prefix + name, defaults[name])
    return values, run_name, source_choice


def device_tiles(model_spec: specs.ModelSpec, config: configs.TrainConfig, trainable: bool) -> None:
    """Device, precision, and the time an epoch should take (estimate.epoch_seconds, scaled by the speed this
    device has measured; under progressive resizing, the run's mean epoch); below them, for a time budget, the
    epochs it holds and the batch it trains at if it holds too few steps (estimate.budget_batch_here), as the job
    will log it."""
    info = model_cache.device()
    precision = info["precision"] if config.precision == "auto" else config.precision
    images = data.train_images_hint(config.data or None, config.limit)
    speed, measured_runs = estimate.measured_speed(info["device"], precision)
    per_epoch = estimate.epoch_seconds(model_spec, images, speed, config, precision) if images and trainable \
        else None
    c = st.columns(3)
    c[0].metric("Device", info["device"].split(" (")[0], help=info["device"])
    # "number format", not "precision", which Evaluate's per-class table means otherwise
    c[1].metric("Number format", precision, help="The precision training computes in: float32, or mixed 16-bit "
                "(bfloat16 on a CPU that has it, float16 on a GPU), with the weights kept in float32.")
    runs_word = "run" if measured_runs == 1 else f"{measured_runs} runs"
    basis = (f"scaled by the speed this device showed in its last {runs_word} in {precision}"
             if measured_runs else f"fitted to another CPU for {precision} until a run on this device has measured "
             "its own speed")
    c[2].metric("Time per epoch (estimate)", ui.duration(per_epoch) if per_epoch else "unknown",
                help=f"{images:,} images × (a fixed cost per image + a cost per multiply-accumulate), {basis}."
                if images else f"The number of training images is not known before the data is loaded; {basis}.")
    if per_epoch and config.minutes is not None:
        epochs = estimate.budget_epochs(model_spec, config, images, precision, speed)
        held = f"about {epochs:.0f} epochs" if epochs >= 1.5 else "about one epoch" if epochs >= 0.5 else \
            "less than one epoch"
        st.caption(f"The time budget sets the run's length, not Epochs: {ui.minutes(config.minutes)} is time for "
                   f"{held} here by this estimate, and the job times its first steps to end the learning-rate "
                   "schedule with the budget.")
    if images and trainable:
        _, change = estimate.budget_batch_here(model_spec, config, images, info, precision, (speed, measured_runs))
        if change:
            st.caption(ui.md_escape(change))


def run_picker(run_id: str | None) -> bool:
    """A selectbox of every run, on the shown one; choosing another shows it. Whether there is any run."""
    listed = [r["run_id"] for r in runs.list_runs()]
    if listed:
        picked = st.selectbox("Run", listed, index=listed.index(run_id) if run_id in listed else None,
                              key=f"train_show_{run_id}", placeholder="choose a run to show",
                              format_func=ui.run_title)
        if picked and picked != run_id:
            select_run(picked)
            st.rerun()
    return bool(listed)


def monitor(run_id: str) -> None:
    """The run's state, progress, tiles, Stop and curves: polled every second while its job trains or waits."""
    initial_state = runs.read_status(runs.run_path(run_id)).get("state")
    live = initial_state in progress.WATCHED_STATES
    st.fragment(_monitor, run_every=1.0 if live else None)(run_id, initial_state)


def _monitor(run_id: str, initial_state: str) -> None:
    run_dir = runs.run_path(run_id)
    # a job killed outright cannot start the run queued behind it; the page does, if it offers its data source
    jobs.start_next(offered=sources.offered)
    status = runs.read_status(run_dir)
    state = status.get("state", "unknown")
    if progress.phase_changed(initial_state, state):
        st.rerun()  # the job ended (or the queued run started): redraw the whole page (Resume button, final numbers)
    done = progress.job_progress(status)
    st.subheader(f"{ui.md_escape(runs.run_label(run_dir))}: {jobs.queue_label(run_id) if state == 'queued' else state}")
    st.caption(ui.run_settings(run_dir))
    if state == "queued" and ui.queue_controls(run_id, "train_queue"):
        if not run_dir.exists():  # cancelled: show the job training now instead
            st.session_state.pop("train_run", None)
            st.query_params.pop("run", None)
        st.rerun()
    # A resumed job redoes its partial epoch; the bar holds its furthest point rather than jump back.
    seen = st.session_state.setdefault("train_progress", {})
    fraction = max(done["fraction"], seen.get(run_id, 0.0)) if state in runs.LIVE_STATES else done["fraction"]
    seen[run_id] = fraction
    st.progress(fraction, text=progress.progress_label(status))
    c = st.columns(3)
    c[0].metric("Elapsed", ui.duration(done["elapsed_s"]))
    c[1].metric("Remaining (estimate)", ui.duration(done["remaining_s"]) if state in runs.LIVE_STATES else "–")
    best, last = metrics.best_val_accuracy(run_dir), metrics.last_val_accuracy(run_dir)
    c[2].metric("Validation accuracy", f"{last:.1%}" if last is not None else "–",
                help="Of the last epoch, whose model is the one saved (Evaluate measures it)"
                     + (f"; the best epoch scored {best:.1%}." if best is not None else "."))
    if state in runs.LIVE_STATES and st.button("Stop", key="stop"):
        with st.spinner("Stopping: the job ends after its batch and keeps its last whole epoch's model…"):
            jobs.stop_job(run_id)
        st.rerun()
    if state == "queued":  # no curve yet: empty axes from -1 to 4 had stood here
        st.caption("Its curves appear here once it starts.")
        return
    records = metrics.read_metrics(run_dir)
    for column, key in zip(st.columns(2), ("loss", "accuracy")):
        column.plotly_chart(charts.training_curve(records, key, status.get("steps_per_epoch")), key=f"curves_{key}")
    if records:  # a sawtooth a student could take for events in the training
        st.caption("The training curve is Keras's running mean over the epoch so far, so it starts again with each "
                   "epoch; the validation points are measured once per epoch, at its end, on images never trained on.")


def retrain_box(run_dir) -> None:
    """For a run that failed on its data, where resuming would fail the same way: another source, a new run."""
    with st.container(border=True):
        st.markdown("**Change the data source** and train this model again as a new run:")
        row = st.columns([3, 1], vertical_alignment="bottom")
        with row[0]:
            data_picker.source_picker("retrain_source", "sample")
        row[1].button("Train on this data", key="retrain", type="primary", on_click=retrain_on,
                      args=(run_dir, "retrain_source"))


def run_header() -> None:
    """The "This run" heading; right after Start, a toast and a scroll to it: the run's progress and curves appear
    below the fold of a 1400 x 1000 screen, and nothing else on it changed."""
    st.header("This run", divider="gray", anchor="this-run")
    started = st.session_state.pop("just_started", None)
    if started:  # one behind a job training is queued: "started" had made two runs seem to train at once
        place = jobs.queue_position(started)
        st.toast(f"Queued ({jobs.ordinal(place)} in line) behind the training under way: it starts on its own when "
                 "its turn comes." if place else "Training started: its progress and curves are below.")
        ui.scroll_to("this-run")
