"""AppTest of the Runs page: the table, overlaid curves of selected rows, downloads, rename and delete."""

import json

import helpers
import pytest
from conftest import TINY_RUN_ID

from cifar_core import runs
from ui.runs_page import table_key

RUNS = "pages/runs.py"


def test_table_curves_downloads_rename_and_delete(open_app, runs_with_model):
    at = open_app(RUNS)
    table = at.dataframe[0].value
    assert list(table["run id"]) == [TINY_RUN_ID]
    row = table.iloc[0]
    assert (row["model"], row["params"], row["epochs"], row["state"]) == ("tiny", 5418, "1/1", "finished")
    assert 0 <= row["best val accuracy"] <= 1 and row["train time (s)"] > 0
    summary = runs.summarize(runs_with_model / TINY_RUN_ID)
    # rounded to the 0.1% shown: Streamlit's percent format cuts, so 0.15999 had read 15.9% beside a metric's 16.0%
    assert row["best val accuracy"] == round(summary["best_val_accuracy"], 3)
    shown = json.loads(at.dataframe[0].proto.columns)  # one decimal always: 41.0% beside 48.5%, not 41%
    for column in ("best val accuracy", "last val accuracy"):
        assert shown[column]["type_config"] == {"type": "number", "format": "percent", "step": 0.001}
    assert "runs_overlay" not in {c.key for c in at.get("plotly_chart")}  # nothing selected yet

    at.session_state[table_key(runs.list_runs())] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, at.exception
    assert "runs_overlay" in {c.key for c in at.get("plotly_chart")}
    at.selectbox(key="runs_metric").set_value("loss").run()
    assert not at.exception

    labels = {b.label for b in at.download_button}
    assert labels == {"Download model.keras", "Download config.json"}

    at.text_input(key=f"runs_label_{TINY_RUN_ID}").set_value("my first tiny")
    at.button(key="rename").click().run()
    assert runs.run_label(runs_with_model / TINY_RUN_ID) == "my first tiny"
    assert at.dataframe[0].value.iloc[0]["name"] == "my first tiny"
    picker = helpers.selectbox(at, "Run")
    assert picker.options == [f"my first tiny ({TINY_RUN_ID})"]  # the pickers say the new name too
    assert [helpers.plain(t.value) for t in at.toast] == ["Renamed to my first tiny."]
    at.text_input(key=f"runs_label_{TINY_RUN_ID}").set_value("   ")
    at.button(key="rename").click().run()
    assert "1 to 80 characters" in at.error[0].value

    assert at.button(key="delete").disabled  # until the confirmation is ticked
    at.checkbox(key=f"runs_confirm_{TINY_RUN_ID}").check().run()
    at.button(key="delete").click().run()
    assert not (runs_with_model / TINY_RUN_ID).exists()
    assert "No runs yet" in at.info[0].value
    # said, though no run is left to show
    assert [helpers.plain(t.value) for t in at.toast] == [f"Deleted my first tiny ({TINY_RUN_ID})."]


def test_a_training_run_cannot_be_deleted(open_app, runs_with_model):
    run_dir = runs_with_model / TINY_RUN_ID
    lock = runs.RunLock(run_dir).acquire()  # as a live job holds it
    try:
        runs.write_status(run_dir, state="running")
        at = open_app(RUNS)
        at.checkbox(key=f"runs_confirm_{TINY_RUN_ID}").check().run()
        at.button(key="delete").click().run()
        assert "still training" in at.error[0].value
        assert run_dir.exists()
    finally:
        lock.release()


@pytest.mark.usefixtures("app_env")
def test_without_runs_the_page_points_to_train(open_app):
    at = open_app(RUNS)
    assert "No runs yet" in at.info[0].value and not at.dataframe


def test_what_changed_between_two_runs(open_app, runs_with_model, monkeypatch, tmp_path):
    import dataclasses
    import shutil

    from cifar_core import spec_io

    pets = tmp_path / "roots" / "pets"
    (pets / "train" / "cat").mkdir(parents=True)
    monkeypatch.setenv("CIFAR_DATA_ROOTS", str(tmp_path / "roots"))

    other = runs_with_model / "20260101-000002-tiny"
    shutil.copytree(runs_with_model / TINY_RUN_ID, other)
    config = runs.read_config(other)
    spec = spec_io.from_dict(config["spec"])
    wider = dataclasses.replace(spec.layers[0], filters=24)
    runs.write_config(other, spec=spec_io.to_dict(dataclasses.replace(spec, layers=(wider, *spec.layers[1:]))),
                      train={**config["train"], "learning_rate": 0.01})
    at = open_app(RUNS)
    assert helpers.selectbox(at, "Run A").value == "20260101-000002-tiny"
    assert helpers.selectbox(at, "Run B").value == TINY_RUN_ID
    frames = [f.value for f in at.dataframe]
    spec_rows = next(f for f in frames if "where" in f.columns).to_dict("records")
    assert spec_rows == [{"where": "layer 1 (Conv2D)", "field": "filters", "A": "24", "B": "16"}]
    setting_rows = next(f for f in frames if "setting" in f.columns).to_dict("records")
    assert setting_rows == [{"setting": "Learning rate", "A": "0.01", "B": "0.003"}]
    assert "runs_cmp_curves" in {c.key for c in at.get("plotly_chart")}
    # a data source by the name the pages give it, never by the server's path to it (the seventh attack)
    runs.write_config(other, train={**runs.read_config(other)["train"], "data": str(pets)})
    at.run()
    setting_rows = next(f.value for f in at.dataframe if "setting" in f.value.columns).to_dict("records")
    assert {"setting": "Data source", "A": "roots/pets", "B": "the embedded sample"} in setting_rows
    # two trials of one sweep: their parameters in the Sweep form's words, not Optuna's names
    for run_dir, trial, rate in ((other, 1, 0.01), (runs_with_model / TINY_RUN_ID, 0, 0.003)):
        runs.write_config(run_dir, sweep={"study": "s", "trial": trial, "params": {"learning_rate": rate, "x": 1}})
    at.run()
    params = next(f.value for f in at.dataframe if "parameter" in f.value.columns).to_dict("records")
    assert params == [{"parameter": "Learning rate", "A": "0.01", "B": "0.003"},
                      {"parameter": "x", "A": "1", "B": "1"}]  # a name the form does not know, as it is


def test_the_queue_moves_up_and_cancels(open_app, app_env, monkeypatch):
    from cifar_core import jobs
    from cifar_core.presets import get_preset

    monkeypatch.setenv("CIFAR_CORE_SLOTS", "1")
    busy = app_env / "20260101-000009-busy"
    runs.create_run(busy, get_preset("tiny").spec, get_preset("tiny").train, state="running")
    lock = runs.RunLock(busy).acquire()  # a job training: the slot is taken
    try:
        first, second = (jobs.start_job(get_preset("tiny").spec, get_preset("tiny").train, app_env, name=n)
                         for n in ("first", "second"))
        at = open_app(RUNS)
        assert "Queue" in [h.value for h in at.subheader]
        assert at.button(key=f"runs_queue_up_{first}").disabled  # first already
        assert not at.button(key=f"runs_queue_up_{second}").disabled
        at.button(key=f"runs_queue_up_{second}").click().run()
        assert [r["run_id"] for r in jobs.queued_runs(app_env)] == [second, first]
        at.button(key=f"runs_queue_cancel_{first}").click().run()
        assert not at.exception and not (app_env / first).exists()
        assert [r["run_id"] for r in jobs.queued_runs(app_env)] == [second]
    finally:
        lock.release()


def test_after_a_delete_run_a_and_run_b_do_not_start_on_the_same_run(open_app, runs_with_model):
    import shutil

    for run_id in ("20260101-000002-tiny", "20260101-000003-tiny"):
        shutil.copytree(runs_with_model / TINY_RUN_ID, runs_with_model / run_id)
    at = open_app(RUNS)
    helpers.selectbox(at, "Run A").set_value("20260101-000002-tiny").run()
    helpers.selectbox(at, "Run B").set_value(TINY_RUN_ID).run()
    runs.delete_run(runs_with_model / TINY_RUN_ID)  # Run B's: its box is made anew, on the default pair's second
    at.run()
    assert not at.exception
    assert helpers.selectbox(at, "Run A").value == "20260101-000002-tiny"
    assert helpers.selectbox(at, "Run B").value == "20260101-000003-tiny"  # not Run A's: "pick two different runs"
    assert not any("Pick two different runs" in c.value for c in at.caption)


def test_a_delete_leaves_no_tick_on_a_run_nobody_picked(open_app, runs_with_model):
    import shutil

    for run_id in ("20990101-000000-tiny", "20980101-000000-tiny"):  # listed first and second
        shutil.copytree(runs_with_model / TINY_RUN_ID, runs_with_model / run_id)
    at = open_app(RUNS)
    at.session_state[table_key(runs.list_runs())] = {"selection": {"rows": [1], "columns": [], "cells": []}}
    at.run()
    assert helpers.selectbox(at, "Run").value == "20980101-000000-tiny"
    runs.delete_run(runs_with_model / "20990101-000000-tiny")  # row 1 is now TINY_RUN_ID, which nobody ticked
    at.run()
    assert not at.exception and "runs_overlay" not in {c.key for c in at.get("plotly_chart")}
    assert helpers.selectbox(at, "Run").value == "20980101-000000-tiny"  # the newest, as with nothing ticked


def test_a_run_file_that_is_a_link_is_not_offered_for_download(open_app, runs_with_model, tmp_path):
    # model.keras made a link to /etc/passwd had been served as the run's model (the sixth attack)
    run_dir = runs_with_model / TINY_RUN_ID
    secret = tmp_path / "secret.json"
    secret.write_text('{"spec": {}, "train": {}}')
    for name, target in (("model.keras", "/etc/passwd"), ("config.json", secret)):
        (run_dir / name).unlink()
        (run_dir / name).symlink_to(target)
    at = open_app(RUNS)
    assert not at.exception and not at.download_button
    assert "its config.json is a link, which is not followed." in helpers.plain(at.warning[0].value)
