"""AppTest of the Sweep page: a bad range is one sentence with nothing started; a real 2-trial sweep of tiny started
from the page runs in its own process, then the page shows its trials, Optuna's figures and opens the best trial."""

import json

import helpers
import pytest

import ui
from cifar_core import runs, studies, sweeps

SWEEP = "pages/sweep.py"


def test_a_bad_range_is_a_sentence_as_it_is_typed(open_app, app_env):
    at = open_app(SWEEP)
    assert any("No sweep yet" in i.value for i in at.info)
    at.number_input(key="sweep_low_width").set_value(3.0)
    at.number_input(key="sweep_high_width").set_value(1.0).run()
    assert not at.exception and at.button(key="sweep_start").disabled  # said before Start, named as the form does
    assert [helpers.plain(e.value) for e in at.error] == [
        "The range 'Width (× every Conv2D's filters)' has 'from' 3.0 above 'to' 1.0."]  # as the boxes are named
    at.number_input(key="sweep_low_width").set_value(0.5).run()
    assert not at.error and not at.button(key="sweep_start").disabled
    for key in ("width", "learning_rate", "label_smoothing"):
        at.checkbox(key=f"sweep_on_{key}").uncheck()
    at.run()
    assert [helpers.plain(e.value) for e in at.error] == ["Choose at least one range or preset to search."]
    assert at.button(key="sweep_start").disabled
    assert sweeps.local_studies(app_env) == [] and runs.list_runs(app_env) == []


def test_an_empty_limit_trains_on_all_images_as_on_train(open_app, app_env, monkeypatch):
    started = []
    monkeypatch.setattr(sweeps, "start_sweep", lambda spec, config, space, trials: started.append(config) or "s")
    at = open_app(SWEEP)
    at.number_input(key="sweep_limit").set_value(0).run()
    assert [helpers.plain(e.value) for e in at.error] == [
        "The setting 'Limit training images' must be empty or a whole number of at least 1, got 0."]
    assert at.button(key="sweep_start").disabled
    at.number_input(key="sweep_limit").set_value(None).run()
    at.button(key="sweep_start").click().run()
    assert not at.exception and [c.limit for c in started] == [None]


def test_trials_out_of_range_say_so_and_start_nothing(open_app, app_env):
    at = open_app(SWEEP)
    at.number_input(key="sweep_trials").set_value(0).run()
    assert [e.value for e in at.error] == ["Trials must be a whole number from 1 to 10,000, got 0."]
    assert at.button(key="sweep_start").disabled and not at.exception
    at.number_input(key="sweep_trials").set_value(3).run()
    assert not at.error and not at.button(key="sweep_start").disabled
    at.number_input(key="sweep_epochs").set_value(1001).run()  # the bounds of TrainConfig's epochs field
    assert [e.value for e in at.error] == ["Epochs per trial must be a whole number from 1 to 1,000, got 1,001."]
    assert at.button(key="sweep_start").disabled
    assert sweeps.local_studies(app_env) == []


def test_a_number_that_is_not_whole_is_named_not_cut(open_app):
    """Streamlit's integer box read "2.5" as 2 and "1e12" as 1 (JavaScript's parseInt); ui.number_input's float box
    passes what was typed, and the page names it."""
    at = open_app(SWEEP)
    at.number_input(key="sweep_trials").set_value(2.5).run()
    assert [e.value for e in at.error] == ["Trials must be a whole number from 1 to 10,000, got 2.5."]
    assert at.button(key="sweep_start").disabled
    at.number_input(key="sweep_trials").set_value(1e12).run()
    assert [e.value for e in at.error] == ["Trials must be a whole number from 1 to 10,000, got 1,000,000,000,000."]
    at.number_input(key="sweep_trials").set_value(4.0).run()
    assert not at.error and at.number_input(key="sweep_trials").value == 4 and not at.exception


def test_a_sweep_from_the_page(open_app, app_env):
    at = open_app(SWEEP)
    at.checkbox(key="sweep_on_label_smoothing").uncheck()
    at.number_input(key="sweep_trials").set_value(2)
    at.number_input(key="sweep_limit").set_value(300)
    at.number_input(key="sweep_epochs").set_value(1)
    # the trials' data source is on the form, the sidebar's to start with, and named under it as on Train
    assert at.selectbox(key="sweep_source").value == at.session_state["data_source"] == "sample"
    assert any(c.value.startswith("Data: embedded sample.") for c in at.caption)
    old = "20260101-000000-sweep-old"  # a study shown before: the Study box had stayed on it after Start
    (app_env / ".sweeps").mkdir()
    runs.write_json(app_env / ".sweeps" / f"{old}.json", {"study": old, "created": "2026-01-01 00:00:00",
                                                          "storage": studies.default_storage(app_env)})
    at.run()
    assert at.selectbox(key="sweep_show").value == old
    at.button(key="sweep_start").click().run()
    assert not at.exception and not at.error, (at.exception, at.error)
    study = at.session_state["sweep_study"]
    assert sweeps.local_studies(app_env)[0]["study"] == study and at.selectbox(key="sweep_show").value == study
    assert [helpers.plain(t.value) for t in at.toast] == [
        "Sweep started: 2 trials, one run each, behind any training in the queue."]
    try:
        helpers.wait_for(lambda: not sweeps.sweep_running(app_env, study), timeout=300, interval=1)
    finally:
        if sweeps.sweep_running(app_env, study):
            sweeps.stop_sweep(app_env, study)
    summary = studies.summary(studies.default_storage(app_env), study)
    assert [t["state"] for t in summary["trials"]] == ["COMPLETE", "COMPLETE"], \
        (app_env / ".sweeps" / f"{study}.log").read_text()
    assert set(summary["trials"][0]["params"]) == {"width", "learning_rate"}
    assert runs.read_config(runs.run_path(summary["trials"][0]["run_dir"].rsplit("/", 1)[-1], app_env))["train"][
        "data"] == "sample"

    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["state"]) == ["complete", "complete"] and "param width" in table.columns
    labels = json.loads(at.dataframe[0].proto.columns)  # the form's words, not Optuna's parameter names
    assert labels["param width"]["label"] == "Width (× every Conv2D's filters)"
    assert labels["seconds"]["label"] == "trial time (s)"  # not the Runs page's train time, and its help says so
    assert labels["param learning_rate"] == {"label": "Learning rate", "type_config": {"type": "number",
                                                                                      "format": "%g"}}
    assert "why it failed" not in table.columns
    assert [h.value for h in at.subheader if "trials" in h.value] == [f"{ui.md_escape(study)}: finished, 2/2 trials"]
    assert {"sweep_fig_history", "sweep_fig_parallel"} <= {c.key for c in at.get("plotly_chart")}
    # two trials of different settings: Optuna ranks the settings, and the page says how little that means yet
    assert "sweep_fig_importances" in {c.key for c in at.get("plotly_chart")}
    assert "Estimated from 2 complete trials: with fewer than 10, which setting mattered most is little more than " \
        "a guess." in [c.value for c in at.caption]
    best = summary["best"]["run_dir"].rsplit("/", 1)[-1]
    at.button(key="sweep_open_train").click().run()
    assert not at.exception, at.exception
    assert at.session_state["train_run"] == best and at.session_state["spec"].name == "tiny"
    # Train offers the trial's model and settings (the learning rate the sweep chose), ready to train again.
    assert at.selectbox(key="train_model").value == "build"
    trial_config = runs.read_spec_and_config(app_env / best)[1]
    rate = at.number_input(key=f"tc_tiny_{ui.slug(best)}_learning_rate").value
    assert rate == pytest.approx(trial_config.learning_rate, rel=1e-3) and trial_config.learning_rate != 0.003
    assert all("/" not in str(r) for r in table["run"])  # run ids, never a server path


def test_the_epochs_range_takes_over_the_epochs_box(open_app):
    at = open_app(SWEEP)
    box = at.number_input(key="sweep_epochs")
    assert not box.disabled and box.help == "Every trial trains this many epochs."
    at.number_input(key="sweep_epochs").set_value(0).run()  # wrong, then taken over by the range: not a blocker
    assert at.button(key="sweep_start").disabled
    at.checkbox(key="sweep_on_epochs").check().run()
    box = at.number_input(key="sweep_epochs_off")
    assert box.disabled and box.help == "Each trial's epochs come from the Epochs range above."
    assert not at.exception and not at.error and not at.button(key="sweep_start").disabled


def test_the_trials_train_on_the_forms_data_source_not_the_sidebars(open_app, monkeypatch, tmp_path):
    started = []
    monkeypatch.setattr(sweeps, "start_sweep", lambda spec, config, space, trials: started.append(config) or "s")
    for name in ("cat", "dog"):
        (tmp_path / "data" / "mine" / "train" / name).mkdir(parents=True)
    monkeypatch.setenv("CIFAR_DATA_ROOTS", str(tmp_path / "data"))
    at = open_app(SWEEP, data_source="data/mine")  # the sidebar's choice starts the form's picker
    assert at.selectbox(key="sweep_source").value == "data/mine"
    at.selectbox(key="sweep_source").set_value("sample").run()
    assert at.session_state["data_source"] == "data/mine"
    at.button(key="sweep_start").click().run()
    assert not at.exception and [c.data for c in started] == ["sample"]  # the form's, where the sidebar's had been


def test_a_folder_the_server_cannot_use_is_a_sentence_not_pythons_words(open_app, app_env):
    (app_env / ".sweeps").write_text("a file where the sweeps' folder goes")
    at = open_app(SWEEP)
    at.button(key="sweep_start").click().run()
    assert not at.exception
    assert [helpers.plain(e.value) for e in at.error] == [
        "The server could not use .sweeps (file exists); whoever runs it can mend that."]  # not "[Errno 17] ..."
