"""AppTest of the Runs page: the table, overlaid curves of selected rows, downloads, rename and delete."""

import pytest
from conftest import TINY_RUN_ID

from cifar_core import runs

RUNS = "pages/runs.py"


def test_table_curves_downloads_rename_and_delete(open_app, runs_with_model):
    at = open_app(RUNS)
    table = at.dataframe[0].value
    assert list(table["run id"]) == [TINY_RUN_ID]
    row = table.iloc[0]
    assert (row["model"], row["params"], row["epochs"], row["state"]) == ("tiny", 5418, "1/1", "finished")
    assert 0 <= row["best val accuracy"] <= 1 and row["train time (s)"] > 0
    assert "runs_overlay" not in {c.key for c in at.get("plotly_chart")}  # nothing selected yet

    at.session_state["runs_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
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
    at.text_input(key=f"runs_label_{TINY_RUN_ID}").set_value("   ")
    at.button(key="rename").click().run()
    assert "1 to 80 characters" in at.error[0].value

    assert at.button(key="delete").disabled  # until the confirmation is ticked
    at.checkbox(key=f"runs_confirm_{TINY_RUN_ID}").check().run()
    at.button(key="delete").click().run()
    assert not (runs_with_model / TINY_RUN_ID).exists()
    assert "No runs yet" in at.info[0].value


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
