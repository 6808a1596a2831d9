"""AppTest of the Train page: a real (tiny) job started from the page, one job at a time (the next queued),
re-attaching through
?run=, a failed run, and a spec that must not start."""

import re
import time

import helpers
import pytest

from cifar_core import metrics, runs, spec_io
from cifar_core import spec as specs

TRAIN = "pages/train.py"
JOB_TIMEOUT_S = 60


def wait_until_ended(run_dir, timeout=JOB_TIMEOUT_S) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = runs.read_status(run_dir)
        if status.get("state") not in runs.LIVE_STATES:
            return status
        time.sleep(0.5)
    pytest.fail(f"the job did not end within {timeout} s: {runs.read_status(run_dir)}")


def test_start_a_tiny_job_refuse_a_second_and_watch_it_finish(open_app, app_env):
    at = open_app(TRAIN)
    assert any("No run to show yet" in i.value for i in at.info)
    at.selectbox(key="train_model").set_value("tiny").run()
    assert at.number_input(key="tc_tiny_epochs").value == 20  # the preset's, then one for a quick test
    at.number_input(key="tc_tiny_epochs").set_value(1)
    at.selectbox(key="tc_tiny_data").set_value("sample")
    at.text_input(key="train_name").set_value("page test")
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["Number format"] in ("float32", "mixed_bfloat16", "mixed_float16")
    assert tiles["Time per epoch (estimate)"].endswith("s")  # 1.6 M MACs x 3 x 1,800 images / 12 GMAC/s ~ 1 s
    at.button(key="start").click().run()
    assert not at.exception and not at.error, (at.exception, at.error)
    (run,) = runs.list_runs()
    run_id = run["run_id"]
    assert run_id.endswith("-tiny") and run["name"] == "page test"
    assert at.text_input(key="train_name").value == ""  # kept, it had named the next run the same
    assert at.query_params["run"] == run_id and at.session_state["train_run"] == run_id
    assert [t.value for t in at.toast] == ["Training started: its progress and curves are below."]  # below the fold
    try:
        # One job at a time: a second start while the first is live is queued behind it, and can be cancelled.
        at.button(key="start").click().run()
        assert not at.exception and not at.error, (at.exception, at.error)
        queued = at.session_state["train_run"]
        assert queued != run_id and runs.read_status(app_env / queued)["state"] == "queued"
        assert helpers.plain(at.subheader[0].value).endswith(": queued, 1st")
        assert [t.value for t in at.toast] == [
            "Queued (1st in line) behind the training under way: it starts on its own when its turn comes."]
        assert not at.get("plotly_chart")  # no empty curves for a run that has not started
        at.button(key=f"train_queue_cancel_{queued}").click().run()
        assert not at.exception and not (app_env / queued).exists()
        assert [r["run_id"] for r in runs.list_runs()] == [run_id]
        assert at.get("progress") and at.button(key="stop")  # the live view of the job training
        status = wait_until_ended(app_env / run_id)
    finally:
        if runs.read_status(app_env / run_id).get("state") in runs.LIVE_STATES:
            from cifar_core import jobs
            jobs.stop_job(run_id)
    assert status["state"] == "finished", status

    # A reload (a new session) re-attaches through ?run=.
    from conftest import ROOT
    from streamlit.testing.v1 import AppTest
    again = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    again.query_params["run"] = run_id
    again.run().switch_page(TRAIN).run()
    assert not again.exception, again.exception
    assert helpers.plain(again.subheader[0].value) == "page test: finished"
    assert {c.key for c in again.get("plotly_chart")} == {"curves_loss", "curves_accuracy"}
    assert not {"stop", "resume"} & {b.key for b in again.button}  # a finished run is neither stopped nor resumed
    again.button(key="evaluate_this").click().run()
    assert not again.exception and again.selectbox(key="eval_model").value == run_id  # this run, not the default
    assert not again.error and any(m.label == "Accuracy" for m in again.metric)  # evaluated, not a second click


def test_a_failed_run_shows_its_error_and_offers_resume(open_app, app_env):
    run_dir = app_env / "20260101-000000-broken"
    run_dir.mkdir()
    runs.write_json(run_dir / "config.json", {"spec": spec_io.to_dict(specs.ModelSpec("broken")), "train": {}})
    runs.write_status(run_dir, state="failed", epoch=0, epochs=3, error="DataError: the data vanished.")
    at = open_app(TRAIN)
    assert at.selectbox(key="train_show_None").value is None  # no job is live and none was chosen
    at.selectbox(key="train_show_None").set_value(run_dir.name).run()
    assert at.subheader[0].value.endswith(": failed")
    assert any("the data vanished" in e.value for e in at.error)
    assert at.button(key="resume")
    assert "stop" not in {b.key for b in at.button}
    # The shown run's own settings, apart from the New run form.
    assert [h.value for h in at.header] == ["New run", "This run"]
    assert any(c.value.startswith("This run's settings") for c in at.caption)


def test_a_run_that_failed_on_its_data_offers_another_data_source_not_resume(open_app, app_env):
    run_dir = app_env / "20260101-000000-nodata"
    run_dir.mkdir()
    spec = specs.ModelSpec("nodata", (specs.GlobalAveragePooling2D(),))
    runs.write_json(run_dir / "config.json", {"spec": spec_io.to_dict(spec), "train": {"data": "keras", "epochs": 1}})
    runs.write_status(run_dir, state="failed", epoch=0, epochs=1, failed_on="data",
                      error="CIFAR-10 could not be downloaded (no network connection).")
    at = open_app(TRAIN, train_run=run_dir.name)
    assert "resume" not in {b.key for b in at.button}
    assert any("Change the data source" in m.value for m in at.markdown)
    assert at.selectbox(key="retrain_source").value == "sample" and at.button(key="retrain")
    assert not any("--" in e.value for e in at.error)  # no command-line flags in a page
    captions = [c.value for c in at.caption]
    assert "This run's settings: model nodata, 1 epoch, batch size 128, data CIFAR\\-10." in captions, captions
    runs.write_json(run_dir / "config.json", {"spec": spec_io.to_dict(spec), "train": {
        "data": "keras", "epochs": 1, "learning_rate": 0.01, "flip": False}})
    captions = [c.value for c in open_app(TRAIN, train_run=run_dir.name).caption]  # a typed-in change is said too
    assert ("This run's settings: model nodata, 1 epoch, batch size 128, data CIFAR\\-10; changed from the model's "
            "defaults: learning rate 0\\.01, random horizontal flip off.") in captions, captions


def test_a_finished_budget_run_names_its_budget_not_its_form_epochs(open_app, app_env):
    run_dir = app_env / "20260101-000000-budget"
    run_dir.mkdir()
    spec = specs.ModelSpec("budget", (specs.GlobalAveragePooling2D(),))
    runs.write_json(run_dir / "config.json", {"spec": spec_io.to_dict(spec),
                                              "train": {"data": "sample", "epochs": 1, "minutes": 0.2}})
    runs.write_status(run_dir, state="finished", epoch=24, epochs=24, step=8, steps_per_epoch=29, budget_s=12.0,
                      time=11.5)
    at = open_app(TRAIN, train_run=run_dir.name)
    captions = [c.value for c in at.caption]
    assert any(c.startswith("This run's settings: model budget, a time budget of 0.2 minutes, batch size")
               for c in captions), captions


def test_the_form_survives_a_visit_to_another_page(open_app):
    at = open_app(TRAIN)
    at.selectbox(key="train_model").set_value("tiny").run()
    at.number_input(key="tc_tiny_epochs").set_value(7)
    at.selectbox(key="tc_tiny_data").set_value("sample")
    at.text_input(key="train_name").set_value("mine").run()
    at.switch_page("pages/runs.py").run()
    at.switch_page(TRAIN).run()
    assert at.selectbox(key="train_model").value == "tiny"
    assert at.number_input(key="tc_tiny_epochs").value == 7
    assert at.selectbox(key="tc_tiny_data").value == "sample"
    assert at.text_input(key="train_name").value == "mine"


def test_the_fast_preset_brings_its_airbench_settings(open_app):
    at = open_app(TRAIN, train_model="fast")
    assert not at.exception, at.exception
    assert at.number_input(key="tc_fast_batch_size").value == 1000
    assert at.selectbox(key="tc_fast_optimizer").value == "muon"
    assert at.number_input(key="tc_fast_filter_learning_rate").value == 0.17
    assert at.number_input(key="tc_fast_momentum").value == 0.85
    assert at.number_input(key="tc_fast_bias_lr_scale").value == 64.0
    assert at.number_input(key="tc_fast_start_fraction").value == 1.0
    assert not at.checkbox(key="tc_fast_lookahead").value and at.selectbox(key="tc_fast_tta").value == "mirror-shift"


def test_progressive_resizing_on_a_network_that_cannot_take_small_images_cannot_start(open_app):
    at = open_app(TRAIN, train_model="fast-small")
    assert at.number_input(key="tc_fast-small_low_res_fraction").value == 0.5
    assert at.number_input(key="tc_fast-small_low_res_size").value == 24 and not at.error
    at.selectbox(key="train_model").set_value("report-2-1").run()
    at.number_input(key="tc_report-2-1_low_res_fraction").set_value(0.5).run()
    assert at.button(key="start").disabled and not at.exception
    assert "a Flatten makes its Dense layers depend on it" in at.error[0].value


def test_a_budget_of_few_steps_says_which_batch_it_trains_at(open_app):
    at = open_app(TRAIN, train_model="fast-small")
    assert at.number_input(key="tc_fast-small_min_steps").value == 200
    assert not any("min_steps" in c.value for c in at.caption)  # no budget: the batch stays
    assert not any("time budget sets" in c.value for c in at.caption)
    at.number_input(key="tc_fast-small_minutes").set_value(0.1).run()
    held = r"The time budget sets the run's length, not Epochs: 0\.1 minutes is time for about \d+ epochs here by this"
    assert any(re.match(held, helpers.plain(c.value)) for c in at.caption), [c.value for c in at.caption]
    # 6 s hold a few steps of 1000 on any CPU: the batch goes to a quarter, the most it halves
    assert any("(min_steps 200): training at batch 250, learning rate 0.2062" in helpers.plain(c.value)
               for c in at.caption), [c.value for c in at.caption]
    assert not at.exception and not at.button(key="start").disabled


def test_an_invalid_spec_from_build_cannot_start(open_app):
    bad = specs.ModelSpec("bad", (specs.MaxPooling2D(),) * 6 + (specs.Flatten(),))
    at = open_app(TRAIN, spec=bad)
    assert at.selectbox(key="train_model").value == "build"
    assert at.button(key="start").disabled
    assert "layer 6 (MaxPooling2D)" in at.error[0].value


def test_stop_asks_the_live_job_to_stop_and_then_offers_resume(open_app, app_env):
    """A stand-in job (this test holds the run's lock, as a job does) that honours the stop request like the real
    one: it sees the stop file, writes 'stopped' and lets go of the lock."""
    import threading

    run_dir = app_env / "20260101-000000-live"
    run_dir.mkdir()
    runs.write_json(run_dir / "config.json", {"spec": spec_io.to_dict(specs.ModelSpec("live")), "train": {}})
    lock = runs.RunLock(run_dir).acquire()
    runs.write_status(run_dir, state="running", epoch=1, epochs=4, step=5, steps_per_epoch=10, time=30.0)
    metrics.append_metrics(run_dir, [{"kind": "batch", "epoch": 1, "step": 5, "time": 30.0, "loss": 2.0,
                                   "accuracy": 0.2}])

    def job():
        deadline = time.time() + 20
        while time.time() < deadline and not runs.stop_requested(run_dir):
            time.sleep(0.05)
        runs.write_status(run_dir, state="stopped")
        lock.release()

    worker = threading.Thread(target=job, daemon=True)
    worker.start()
    try:
        at = open_app(TRAIN)  # no run chosen: the page shows the live job
        assert helpers.plain(at.subheader[0].value) == "20260101-000000-live: running"
        bar = at.get("progress")[0].proto
        assert (bar.value, bar.text) == (12, "epoch 1/4, step 5/10")  # 1.5 of 4 epochs, as a percentage
        tiles = {m.label: m.value for m in at.metric}
        assert tiles["Elapsed"] == "30 s" and tiles["Remaining (estimate)"] == "3 min 30 s"
        assert "resume" not in {b.key for b in at.button}
        at.button(key="stop").click().run()
        assert not at.exception, at.exception
        assert runs.read_status(run_dir)["state"] == "stopped"
        assert helpers.plain(at.subheader[0].value) == "20260101-000000-live: stopped"
        assert at.button(key="resume") and "stop" not in {b.key for b in at.button}
    finally:
        worker.join(timeout=25)
        lock.release()


def test_the_page_starts_a_standby_and_start_hands_it_the_job(open_app, app_env, monkeypatch):
    from cifar_core import jobs

    monkeypatch.setenv("CIFAR_CORE_STANDBY", "1")
    monkeypatch.setenv("CIFAR_CORE_STANDBY_IDLE_S", "60")
    at = open_app(TRAIN)
    deadline = time.time() + 20
    while not jobs.standby_pid(app_env) and time.time() < deadline:
        time.sleep(0.1)
    standby = jobs.standby_pid(app_env)
    assert standby, "showing the Train page started no standby process"

    at.selectbox(key="train_model").set_value("tiny").run()
    at.selectbox(key="tc_tiny_data").set_value("sample")
    at.button(key="start").click().run()

    (run,) = runs.list_runs()
    assert runs.read_status(app_env / run["run_id"])["pid"] == standby
    assert wait_until_ended(app_env / run["run_id"])["state"] == "finished"


def test_a_setting_error_names_the_setting_as_the_form_does(open_app):
    at = open_app(TRAIN, train_model="tiny")
    at.selectbox(key="tc_tiny_schedule").set_value("cosine")
    at.number_input(key="tc_tiny_minutes").set_value(1.0).run()
    assert [helpers.plain(e.value) for e in at.error] == [
        "The setting 'Time budget (minutes)' needs schedule one-cycle or constant: a time budget moves the end of the "
        "schedule, and Keras's cosine decay has a fixed length."]
    assert at.button(key="start").disabled and not at.exception


def test_a_number_typed_out_of_range_is_refused_by_name_then_the_next_one(open_app):
    """No stale figure: each value typed is the one the message names (Streamlit's bounds kept the last valid)."""
    at = open_app(TRAIN, train_model="tiny")
    pointer = "A setting is out of range: the message under its box says what it allows."
    at.number_input(key="tc_tiny_learning_rate").set_value(-1.0).run()
    assert [helpers.plain(e.value) for e in at.error] == [
        "The setting 'Learning rate' must be a number in (0, 10], got -1.0.", pointer]  # under its box, above Start
    assert at.button(key="start").disabled
    at.number_input(key="tc_tiny_learning_rate").set_value(50.0).run()
    assert [helpers.plain(e.value) for e in at.error] == [
        "The setting 'Learning rate' must be a number in (0, 10], got 50.0.", pointer]
    at.number_input(key="tc_tiny_learning_rate").set_value(0.01).run()
    assert not at.error and not at.button(key="start").disabled and not at.exception


def test_a_number_that_is_not_whole_is_refused_not_cut(open_app):
    """Streamlit's integer box read "2.5" as 2 and "1e12" as 1 (JavaScript's parseInt), and trained on that."""
    at = open_app(TRAIN, train_model="tiny")
    at.number_input(key="tc_tiny_epochs").set_value(2.5).run()
    assert helpers.plain(at.error[0].value) == "The setting 'Epochs' must be a whole number from 1 to 1000, got 2.5."
    assert at.button(key="start").disabled and not at.exception
    at.number_input(key="tc_tiny_epochs").set_value(3.0).run()
    assert not at.error and not at.button(key="start").disabled


def test_a_duration_no_clock_gives_reads_as_a_dash():
    import ui

    assert [ui.duration(s) for s in (None, 0.5, 59.6, 61, 7260)] == ["–", "under 1 s", "1 min 00 s", "1 min 01 s",
                                                                      "2 h 01 min"]
    # a torn record's times (status time 1e308, an epoch of -1e308 s) had raised OverflowError on the Train page
    assert [ui.duration(s) for s in (float("inf"), float("nan"), -5.0, 1e308)] == ["–", "–", "–", "over 1,000 h"]
