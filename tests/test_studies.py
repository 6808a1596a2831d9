"""cifar_core.studies: storage URLs and study names, and a study's summary as the Sweep page shows it. Reading a
real study is tested with the sweeps that make one (tests/test_sweeps.py)."""

import importlib.util
import time

import pytest

from cifar_core import spec as S
from cifar_core import studies


def test_redact_and_driver():
    assert studies.redact("postgresql://ann:secret@db:5432/s") == "postgresql://ann:***@db:5432/s"
    assert studies.redact("postgresql://:secret@db/s") == "postgresql://:***@db/s"  # no user name: still hidden
    assert studies.redact("postgresql+psycopg://ann:se/cret@db/s") == "postgresql+psycopg://ann:***@db/s"
    assert studies.redact("sqlite:////srv/app/runs/sweeps.db") == "sqlite:///sweeps.db"
    assert studies.redact("postgresql://bob@db/optuna?sslmode=require&password=hunter2&PassFile=/p") == (
        "postgresql://bob@db/optuna?sslmode=require&password=***&PassFile=***")
    assert studies.without_password("sqlite:////srv/app/runs/other.db") == "sqlite:////srv/app/runs/other.db"
    assert studies._driver_url("postgresql://ann@db/s").startswith("postgresql+psycopg://") or \
        importlib.util.find_spec("psycopg2")
    with pytest.raises(S.SpecError, match="--storage must be a database URL"):
        studies.open_storage("runs/sweeps.db")
    with pytest.raises(S.SpecError, match="A study name must be"):
        studies.check_study_name("../evil")


def test_the_sweep_pages_table_and_best_run():
    summary = {"trials": [
        {"number": 0, "state": "COMPLETE", "value": 0.5, "seconds": 2.5, "params": {"width": 1.5, "dropout": 0.1},
         "run_dir": "/r/20260101-000000-tiny"},
        {"number": 1, "state": "PRUNED", "value": None, "seconds": 1.0, "params": {"width": 0.5}, "run_dir": None},
        {"number": 2, "state": "RUNNING", "value": None, "seconds": None, "params": {}, "run_dir": None}],
        "best": {"number": 0, "value": 0.5, "params": {}, "run_dir": "/r/20260101-000000-tiny/"}}
    assert studies.trials_done(summary) == 2
    assert studies.trial_rows(summary) == [
        {"trial": 0, "state": "complete", "validation accuracy": 0.5, "seconds": 2.5, "param width": 1.5,
         "param dropout": 0.1, "run": "20260101-000000-tiny"},  # the id: pages print no server path
        {"trial": 1, "state": "pruned", "validation accuracy": None, "seconds": 1.0, "param width": 0.5, "run": None},
        {"trial": 2, "state": "running", "validation accuracy": None, "seconds": None, "run": None}]
    failed = {"number": 3, "state": "FAIL", "value": None, "seconds": 1.0, "params": {}, "run_dir": None,
              "error": "The trial's run 20260101-000003-tiny ended failed: MemoryError"}
    rows = studies.trial_rows({**summary, "trials": [*summary["trials"], failed]})
    assert [row["why it failed"] for row in rows] == [None, None, None, failed["error"]]  # only once one failed
    assert studies.best_run_id(summary) == "20260101-000000-tiny"
    assert studies.best_run_id({**summary, "best": None}) is None
    assert studies.best_run_id({**summary, "best": {**summary["best"], "run_dir": None}}) is None


def test_figures_wait_for_a_complete_trial(tmp_path):
    import optuna

    url = studies.default_storage(tmp_path)
    study = optuna.create_study(study_name="s", storage=studies.open_storage(url), direction="maximize")
    study.enqueue_trial({"x": 1.0})
    study.ask({"x": optuna.distributions.FloatDistribution(0, 2)})  # running, not complete
    assert studies.figures(url, "s") == {}  # not Optuna's empty axes from -1 to 4
    study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, value=0.4,
                                              distributions={"x": optuna.distributions.FloatDistribution(0, 2)}))
    shown = studies.figures(url, "s")
    assert set(shown) == {"history", "parallel"}
    study.add_trial(optuna.trial.create_trial(params={"x": 1.5}, value=0.6,
                                              distributions={"x": optuna.distributions.FloatDistribution(0, 2)}))
    shown = studies.figures(url, "s", {"x": "The ex"})
    history = {trace.name: list(trace.y) for trace in shown["history"].data}
    assert history["validation accuracy (%)"] == [40.0, 60.0]  # in percent, as the pages say an accuracy
    assert history["Best Value"][-2:] == [40.0, 60.0]  # Optuna's best-value line is kept
    assert shown["history"].layout.yaxis.title.text == "validation accuracy (%)"
    assert shown["history"].layout.xaxis.dtick == 1  # whole trials: Plotly had ticked 0, 0.2, 0.4
    assert all(f.layout.margin.l == f.layout.margin.r == 50 for f in shown.values())  # a phone cut off the labels
    # the parallel plot's best trial is the darkest line (with Optuna's `target` its colours had been reversed)
    colours = [trace.line.color for trace in shown["parallel"].data if trace.line.color]
    objective = [note.text for note in shown["parallel"].layout.annotations if note.x == 0]
    assert objective and all(text.endswith("%") for text in objective) and "60%" in objective  # not 0.6
    assert [t.marker.colorbar.tickformat for t in shown["parallel"].data if t.mode == "markers"] == [".1~%"]
    assert sum(map(float, colours[-1][4:-1].split(","))) < sum(map(float, colours[0][4:-1].split(",")))
    # the worst trial's line is a visible blue, not Optuna's white on the white page; the colour bar agrees
    assert colours[0] == "rgb(158, 202, 225)"
    assert [t.marker.colorscale[0][1] for t in shown["parallel"].data if t.mode == "markers"] == ["rgb(158,202,225)"]
    # the settings as the page names them, on the axes and in the hovers; the accuracy in percent there too
    assert shown["parallel"].layout.xaxis.ticktext == ("validation accuracy", "The ex")
    assert [list(row) for row in shown["parallel"].data[0].customdata] == [["validation accuracy", "40%"],
                                                                          ["The ex", "0.5"]]
    assert shown["importances"].data[0].y == ("The ex",)


def test_no_folder_is_made_for_an_sqlite_file(tmp_path):
    studies.open_storage(f"sqlite:///{tmp_path / 'sweeps.db'}")
    with pytest.raises(studies.SweepError, match="The folder of the SQLite database sqlite:///sweeps.db does not "
                                                 "exist; make it first"):
        studies.open_storage(f"sqlite:///{tmp_path / 'no' / 'such' / 'sweeps.db'}")
    assert not (tmp_path / "no").exists()  # a mistyped path had made a whole tree


def test_a_sweep_from_the_page_makes_its_new_runs_folder(tmp_path, monkeypatch):
    from cifar_core import jobs, presets, sweeps

    monkeypatch.setattr(jobs, "spawn", lambda *args, **kwargs: 1)  # the worker is not the point here
    tiny = presets.get_preset("tiny")
    runs_dir = tmp_path / "new" / "studio" / "runs"
    sweeps.start_sweep(tiny.spec, tiny.train, {"learning_rate": {"low": 1e-3, "high": 1e-2}}, 2, runs_dir, "s")
    assert (runs_dir / "sweeps.db").is_file()


def test_a_failed_trials_stored_reason_is_text_or_nothing(tmp_path):
    import optuna

    # a study's attributes are anybody's who can write its storage: an error stored as a list took the page down
    url = studies.default_storage(tmp_path)
    study = optuna.create_study(study_name="s", storage=studies.open_storage(url), direction="maximize")
    for error in (["a", {"b": 1}], 42, "out of memory"):
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL,
                                                  user_attrs={"error": error, "run_dir": {"not": "a path"}}))
    rows = studies.summary(url, "s")["trials"]
    unsaid = "Its worker ended without recording a result (killed, or it crashed)."  # no reason it can show
    assert [(r["error"], r["run_dir"]) for r in rows] == [(unsaid, None), (unsaid, None), ("out of memory", None)]


def test_an_sqlite_storage_is_a_file_and_a_reader_makes_none(tmp_path):
    # in memory, every open is a new empty database (the study was made, then 'there is no study'); a worker or a
    # reader given a mistyped file had left a new empty database behind
    for url in ("sqlite://", "sqlite:///:memory:", "sqlite:///file:x?mode=memory&uri=true"):
        with pytest.raises(studies.SweepError, match="names no file"):
            studies.open_storage(url)
    typo = tmp_path / "typo.db"
    with pytest.raises(studies.SweepError, match="There is no SQLite database"):
        studies.open_storage(f"sqlite:///{typo}", create=False)
    assert not typo.exists()
    studies.open_storage(f"sqlite:///{typo}")  # made by the sweep that creates the study
    assert typo.is_file() and studies.open_storage(f"sqlite:///{typo}", create=False)


def test_a_trial_whose_worker_died_is_failed_when_the_study_is_read(tmp_path, monkeypatch):
    """A sweep worker killed outright left its trial running for good: Optuna fails a stale trial only when a worker
    asks for the next one, and a study whose every worker was killed has none left to ask."""
    import optuna

    monkeypatch.setattr(studies, "HEARTBEAT_GRACE_S", 2)  # SQLite's clock counts whole seconds
    url = studies.default_storage(tmp_path)
    storage = studies.open_storage(url)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 2)})
    storage.record_heartbeat(trial._trial_id)  # as a worker's trial does, until the worker is killed
    assert [t["state"] for t in studies.summary(url, "s")["trials"]] == ["RUNNING"]  # a heartbeat within the grace
    time.sleep(3.5)
    with monkeypatch.context() as readonly:  # a reader that may not write: the trial stays as it is, and no error
        def refused(*args, **kwargs):
            raise optuna.exceptions.StorageInternalError("attempt to write a readonly database")
        readonly.setattr(optuna.storages.RDBStorage, "set_trial_state_values", refused)
        assert [t["state"] for t in studies.summary(url, "s")["trials"]] == ["RUNNING"]
    (row,) = studies.summary(url, "s")["trials"]
    assert row["state"] == "FAIL" and row["error"] == "Its worker ended without recording a result (killed, or it " \
        "crashed)."


def test_a_write_waits_for_a_lock_longer_than_sqlites_five_seconds(tmp_path):
    """A worker whose write met another connection's lock for more than SQLite's 5 s died on 'database is locked',
    its trial left running."""
    import sqlite3
    import threading

    import optuna

    url = studies.default_storage(tmp_path)
    study = optuna.create_study(study_name="s", storage=studies.open_storage(url), direction="maximize")
    locked = threading.Event()

    def hold():
        other = sqlite3.connect(tmp_path / "sweeps.db", isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(6)
        other.execute("COMMIT")
        other.close()

    holder = threading.Thread(target=hold)
    holder.start()
    locked.wait()
    began = time.time()
    study.set_user_attr("trials", 3)
    holder.join()
    assert time.time() - began > 5.5 and studies.summary(url, "s")["trials_wanted"] == 3
