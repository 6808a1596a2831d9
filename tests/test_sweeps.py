"""cifar_core.sweeps: the search space (checked, applied to a spec and settings), a real 3-trial sweep of tiny through
the CLI on SQLite, the pruner stopping a bad trial's job, and two sweep-worker processes sharing one study in a real
PostgreSQL server."""

import dataclasses
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import helpers
import optuna
import pytest

from cifar_core import metrics, runs, studies, sweeps
from cifar_core import space as spaces
from cifar_core import spec as S
from cifar_core.presets import get_preset
from cifar_core.space import SweepError

TINY = get_preset("tiny")


def test_a_file_path_is_not_a_storage():
    with pytest.raises(S.SpecError, match="--storage must be a database URL"):
        sweeps.create_study("runs/sweeps.db", "s", TINY.spec, TINY.train, {"width": {"low": 1, "high": 2}}, 2)


def test_a_sweep_of_a_network_that_cannot_take_its_small_images_is_refused_before_a_study_exists(tmp_path):
    storage = f"sqlite:///{tmp_path / 'sweeps.db'}"
    flat = get_preset("report-2-1").spec
    low_res = dataclasses.replace(TINY.train, low_res_fraction=0.5, low_res_size=16)
    with pytest.raises(S.SpecError, match="low_res_fraction to 0"):
        sweeps.create_study(storage, "s", flat, low_res, {"learning_rate": {"low": 1e-3, "high": 1e-2}}, 2)
    assert optuna.get_all_study_names(storage) == []


def test_the_trial_count_is_checked_against_one_limit_where_made_and_where_read(tmp_path):
    storage = f"sqlite:///{tmp_path / 'sweeps.db'}"
    space = {"learning_rate": {"low": 1e-3, "high": 1e-2}}
    for trials in (0, sweeps.MAX_TRIALS + 1, True, 2.0):
        with pytest.raises(SweepError, match="--trials must be a whole number from 1 to 10,000"):
            sweeps.create_study(storage, "s", TINY.spec, TINY.train, space, trials)
    study = sweeps.create_study(storage, "s", TINY.spec, TINY.train, space, sweeps.MAX_TRIALS)
    assert sweeps.load_study(storage, "s")[-1] == sweeps.MAX_TRIALS
    for stored in (sweeps.MAX_TRIALS + 1, True, "3"):
        study.set_user_attr("trials", stored)
        with pytest.raises(SweepError, match="has no number of trials"):
            sweeps.load_study(storage, "s")


def test_a_failed_trials_reason_is_kept_with_the_trial(tmp_path):
    storage = f"sqlite:///{tmp_path / 'sweeps.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    trial = study.ask()
    run_dir = runs.create_run(tmp_path / "runs" / "20260101-000000-tiny", TINY.spec, TINY.train)
    runs.write_status(run_dir, state="failed", error="MemoryError: out of memory")
    with pytest.raises(runs.RunError, match="ended failed: MemoryError"):
        sweeps.follow_run(trial, run_dir, tmp_path / "runs", "s")
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    died = study.ask()  # a worker that died before it could record why: the run's own error, read here
    died.set_user_attr("run_dir", str(run_dir))
    study.tell(died, state=optuna.trial.TrialState.FAIL)
    rows = studies.trial_rows(studies.summary(storage, "s"))
    assert [row["state"] for row in rows] == ["fail", "fail"]
    assert [row["why it failed"] for row in rows] == [
        "The trial's run 20260101-000000-tiny ended failed: MemoryError: out of memory", "MemoryError: out of memory"]


def test_a_study_saved_before_a_setting_existed_opens_again(tmp_path):
    storage = f"sqlite:///{tmp_path / 'sweeps.db'}"
    space = {"learning_rate": {"low": 1e-3, "high": 1e-2}}
    study = sweeps.create_study(storage, "old", TINY.spec, TINY.train, space, 2)
    old = study.user_attrs["base"]
    old["train"].pop("minutes")
    old["train"]["tta"] = False
    study.set_user_attr("base", old)
    sweeps.create_study(storage, "old", TINY.spec, TINY.train, space, 2)  # the same recipe: opened again
    other = dataclasses.replace(TINY.train, learning_rate=0.5)
    with pytest.raises(SweepError, match="already exists with another model"):
        sweeps.create_study(storage, "old", TINY.spec, other, space, 2)


def test_the_sweep_pages_settings():
    from cifar_core.config import TrainConfig, with_epochs

    assert sweeps.trial_config(TINY.spec, 2, "sample", 300) == dataclasses.replace(
        with_epochs(TINY.train, 2), data="sample", limit=300)
    mine = dataclasses.replace(TINY.spec, name="mine")  # not a preset: the default settings
    assert sweeps.trial_config(mine, 3, "keras", 0) == dataclasses.replace(with_epochs(TrainConfig(), 3), data="keras")
    with pytest.raises(S.SpecError, match="epochs"):
        sweeps.trial_config(TINY.spec, 0, "sample", 0)



def test_a_three_trial_sweep_of_tiny_on_sqlite(tmp_path):
    result = helpers.run_cli("sweep", "--preset", "tiny", "--trials", 3, "--data", "sample", "--limit", 300,
                             "--epochs", 1, "--study", "three", "--runs-dir", tmp_path, "--json", timeout=400)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    trials = summary["trials"]
    assert [t["number"] for t in trials] == [0, 1, 2] and {t["state"] for t in trials} == {"COMPLETE"}
    assert len({t["run_dir"] for t in trials}) == 3
    for t in trials:
        run_dir = Path(t["run_dir"])
        assert run_dir.parent == tmp_path.resolve() and runs.read_status(run_dir)["state"] == "finished"
        assert set(t["params"]) == {"width", "learning_rate", "label_smoothing"}  # the default space for tiny
        assert runs.read_config(run_dir)["sweep"] == {"study": "three", "trial": t["number"], "params": t["params"]}
        assert all(float(f"{v:.3g}") == v for v in t["params"].values())  # as trained: three digits, not Optuna's
        assert t["value"] == max(r["val_accuracy"] for r in metrics.epoch_records(run_dir))
    best = max(trials, key=lambda t: t["value"])
    assert summary["best"]["value"] == best["value"] and summary["best"]["run_dir"] == best["run_dir"]
    assert (tmp_path / "sweeps.db").is_file()  # the default storage: SQLite in the runs folder
    listed = {r["run_id"] for r in runs.list_runs(tmp_path)}
    assert {Path(t["run_dir"]).name for t in trials} <= listed  # ordinary runs, on every page
    study = optuna.load_study(study_name="three", storage=studies.default_storage(tmp_path))
    assert study.user_attrs["trials"] == 3 and "width" in study.user_attrs["space"]


def test_the_pruner_stops_a_trial_forced_to_be_bad(tmp_path):
    """Three earlier trials held 95% validation accuracy at every epoch; a tiny trial on 300 images with a
    learning rate 100x too low is far below their median after its first epoch, so its job is asked to stop."""
    storage = studies.default_storage(tmp_path)
    space = {"learning_rate": {"low": 1e-5, "high": 1e-2, "log": True}}
    base = dataclasses.replace(TINY.train, data="sample", limit=300, epochs=60)
    study = sweeps.create_study(storage, "prune", TINY.spec, base, space, trials=4)
    distribution = optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True)
    for _ in range(3):
        study.add_trial(optuna.trial.create_trial(
            params={"learning_rate": 3e-3}, distributions={"learning_rate": distribution}, value=0.95,
            intermediate_values={epoch: 0.95 for epoch in range(1, 61)}))
    study.enqueue_trial({"learning_rate": 1e-5})
    with helpers.keras_process_state():
        sweeps.work(storage, "prune", tmp_path, log=lambda m: None)
    (trial,) = [t for t in studies.summary(storage, "prune")["trials"] if t["number"] == 3]
    assert trial["state"] == "PRUNED" and trial["params"] == {"learning_rate": 1e-5}
    run_dir = Path(trial["run_dir"])
    assert runs.read_status(run_dir)["state"] == "stopped"  # its job stopped between batches, model saved
    assert 1 <= len(metrics.epoch_records(run_dir)) < 60 and (run_dir / "model.keras").is_file()
    assert len(studies.summary(storage, "prune")["trials"]) == 4  # the study had its 4: no fifth was asked for


@pytest.mark.parametrize("how", ["stop file", "SIGTERM", "two SIGTERMs"])
def test_stop_request_ends_a_sweep(how, tmp_path):
    """The Sweep page's Stop, and a SIGTERM to the sweep (or two in quick succession): killed at once instead, the
    sweep had left its trial's job training on and the trial 'running' in the study for good."""
    storage = studies.default_storage(tmp_path)
    base = dataclasses.replace(TINY.train, data="sample", limit=300, epochs=500)
    sweeps.create_study(storage, "stopme", TINY.spec, base, {"learning_rate": {"low": 1e-3, "high": 1e-2}}, 5)
    worker = helpers.start_cli("sweep-worker", "--storage", storage, "--study", "stopme", "--runs-dir", tmp_path)
    try:
        helpers.wait_for(lambda: any(r["state"] == "running" for r in runs.list_runs(tmp_path)), 120,
                         process=worker)
        if how == "stop file":
            sweeps.stop_sweep(tmp_path, "stopme")
        else:
            worker.send_signal(signal.SIGTERM)
            if how == "two SIGTERMs":
                time.sleep(0.1)
                worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == (0 if how == "stop file" else 128 + signal.SIGTERM), err  # as a shell reports one
    assert "Traceback" not in err and "was stopped" in out  # one line, not Optuna's traceback of the trial
    helpers.wait_for(lambda: runs.list_runs(tmp_path)[0]["state"] == "stopped", 60)  # the second: after its batch
    (row,) = runs.list_runs(tmp_path)
    assert row["has_model"]
    trials = studies.summary(storage, "stopme")["trials"]
    assert [t["state"] for t in trials] == ["FAIL"]  # stopped by the user: no value, and no further trial
    assert trials[0]["error"] == "Stopped with the sweep."  # not taken for a worker that died


# ---- a real PostgreSQL, two workers

def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return found[-1].parent if found else None


@pytest.fixture
def postgres_url():
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("Debian's postgresql server is not installed (/usr/lib/postgresql/*/bin/postgres; .ci/run "
                    "installs it)")
    as_user = []
    folder = Path(tempfile.mkdtemp(prefix="cifar-pg-"))
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    user = "postgres" if as_user else pwd.getpwuid(os.getuid()).pw_name
    port = helpers.free_port()
    data = folder / "data"

    def run(*command):
        return subprocess.run([*as_user, *map(str, command)], check=True, capture_output=True, text=True,
                              timeout=120)

    run(bin_dir / "initdb", "-D", data, "-U", user, "--auth=trust")
    run(bin_dir / "pg_ctl", "-D", data, "-l", folder / "server.log", "-w", "-o",
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start")
    try:
        run(bin_dir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", user, "sweeps")
        yield f"postgresql://{user}@127.0.0.1:{port}/sweeps"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_one_study_in_postgresql(postgres_url, tmp_path):
    base = dataclasses.replace(TINY.train, data="sample", limit=300, epochs=1)
    # no pruner: the median pruner may prune the 4th trial (one epoch, reported once), and this is about sharing
    sweeps.create_study(postgres_url, "shared", TINY.spec, base, spaces.default_space(TINY.spec), trials=4,
                        pruner="none")
    folders = [tmp_path / "machine-a", tmp_path / "machine-b"]  # two machines: a runs folder each
    workers = [helpers.start_cli("sweep-worker", "--storage", postgres_url, "--study", "shared", "--runs-dir", f)
               for f in folders]
    try:
        outcomes = [w.communicate(timeout=600) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    assert [w.returncode for w in workers] == [0, 0], [err for _, err in outcomes]

    # A third process reads the study.
    read = helpers.run_cli("sweep-worker", "--storage", postgres_url, "--study", "shared", "--json",
                           "--runs-dir", tmp_path / "reader")
    assert read.returncode == 0, read.stderr
    trials = json.loads(read.stdout.strip().splitlines()[-1])["trials"]
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    assert len(complete) == 4 and len(trials) == 4, trials
    assert sorted(t["number"] for t in complete) == [0, 1, 2, 3]
    run_dirs = [Path(t["run_dir"]) for t in complete]
    assert len(set(run_dirs)) == 4
    trained = sorted(p for f in folders for p in f.iterdir() if runs.RUN_ID.match(p.name))
    assert sorted(run_dirs) == trained  # every trial trained once, in one of the two machines' folders
    for run_dir in run_dirs:
        assert runs.read_status(run_dir)["state"] == "finished" and len(metrics.epoch_records(run_dir)) == 1
        assert (run_dir / "job.log").read_text().count("Training on") == 1
    assert not (tmp_path / "reader").exists() or not any(
        runs.RUN_ID.match(p.name) for p in (tmp_path / "reader").iterdir())  # the reader trained nothing


def test_a_signal_stops_this_worker_alone_and_a_second_stops_it_at_once():
    term, interrupt = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    sweeps._SIGNALLED.clear()
    replaced = sweeps._stop_on_signals()
    try:
        assert set(replaced) == {signal.SIGTERM, signal.SIGINT}
        os.kill(os.getpid(), signal.SIGTERM)
        assert sweeps._SIGNALLED == {"signum": signal.SIGTERM}  # this process's flag, not the study's stop file
        with pytest.raises(KeyboardInterrupt):  # the second: at once (Optuna records the trial as failed)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        sweeps._restore(replaced)
        assert signal.getsignal(signal.SIGTERM) is term and signal.getsignal(signal.SIGINT) is interrupt
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # started in the background: Ctrl-C is not for this process
        assert set(sweeps._stop_on_signals()) == {signal.SIGTERM}
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, term)
        signal.signal(signal.SIGINT, interrupt)
        sweeps._SIGNALLED.clear()


def test_a_trial_failing_on_a_refused_setting_is_one_line_not_a_traceback():
    import logging

    # Optuna logs a caught trial error with its traceback: 15 lines on stderr for one refused setting
    def record(error):
        try:
            raise error
        except Exception:
            return logging.LogRecord("optuna", logging.WARNING, "", 0, "Trial 0 failed", None, sys.exc_info())

    refused = record(S.SpecError("filters must be a whole number from 1 to 4096, got 4608."))
    assert sweeps._not_a_stop(refused) and refused.exc_info is None  # its one line stays, the traceback goes
    assert not sweeps._not_a_stop(record(sweeps.SweepStopped("stopped")))  # said by the sweep itself
    other = record(ZeroDivisionError("a defect"))
    assert sweeps._not_a_stop(other) and other.exc_info is not None  # a defect keeps its traceback


def test_two_sweeps_started_in_the_same_second_are_two_studies(tmp_path, monkeypatch):
    """Two tabs' Start in one second made one name from the time: the second had joined the first study (or been
    refused in the command line's words), and the record's pid was the last worker's."""
    from cifar_core import jobs

    pids = iter((111, 222))
    monkeypatch.setattr(jobs, "spawn", lambda *args, **kwargs: next(pids))
    monkeypatch.setattr(runs, "new_run_id", lambda suffix: f"20260101-000000-{suffix}")
    space = {"learning_rate": {"low": 1e-3, "high": 1e-2}}
    first = sweeps.start_sweep(TINY.spec, TINY.train, space, 2, tmp_path)
    second = sweeps.start_sweep(TINY.spec, dataclasses.replace(TINY.train, epochs=3), space, 4, tmp_path)
    assert (first, second) == ("20260101-000000-sweep-tiny", "20260101-000000-sweep-tiny-2")
    assert [(s["study"], s["pid"]) for s in sorted(sweeps.local_studies(tmp_path), key=lambda s: s["study"])] == [
        (first, 111), (second, 222)]
    storage = studies.default_storage(tmp_path)
    assert [studies.summary(storage, name)["trials_wanted"] for name in (first, second)] == [2, 4]
    # a name the user gives is still one study, joined when the same and refused when not
    with pytest.raises(SweepError, match="already exists with another model or search space"):
        sweeps.create_study(storage, first, TINY.spec, TINY.train, {"width": {"low": 0.5, "high": 2}}, 2)


def test_a_stop_pressed_before_the_page_started_worker_begins_is_kept(tmp_path, monkeypatch):
    """The worker had cleared the stop file as it began: a Stop pressed in the second after Start was lost, and every
    trial trained. One started by hand still drops a stop left from before."""
    from cifar_core import jobs

    monkeypatch.setattr(jobs, "spawn", lambda *args, **kwargs: 4242)
    started = []
    monkeypatch.setattr(jobs, "start_job", lambda *args, **kwargs: started.append(args) or "never")
    storage = studies.default_storage(tmp_path)
    study = sweeps.start_sweep(TINY.spec, TINY.train, {"learning_rate": {"low": 1e-3, "high": 1e-2}}, 3, tmp_path)
    sweeps.stop_sweep(tmp_path, study)
    monkeypatch.setenv("CIFAR_CORE_LAUNCHED", "1")  # as jobs.spawn starts the worker
    assert sweeps.work(storage, study, tmp_path, log=lambda m: None) is None
    assert started == [] and studies.summary(storage, study)["trials"] == []
    assert not sweeps._stop_file(tmp_path, study).exists()  # honoured, so a later worker is not stopped by it
    monkeypatch.delenv("CIFAR_CORE_LAUNCHED")
    sweeps.stop_sweep(tmp_path, study)  # left from before a worker started by hand (sweep-worker)
    monkeypatch.setattr(sweeps, "make_objective", lambda *args, **kwargs: lambda trial: 0.5)
    sweeps.work(storage, study, tmp_path, log=lambda m: None)
    assert [t["state"] for t in studies.summary(storage, study)["trials"]] == ["COMPLETE"] * 3


def test_a_sweep_run_from_the_command_line_shows_as_running_and_only_as_its_own(tmp_path, monkeypatch):
    """The command line's sweep recorded no pid, and the page called it stopped while it trained; a record naming
    another study's live worker had made a finished study look live."""
    seen = []
    monkeypatch.setattr(sweeps, "work", lambda storage, study, runs_dir, log: seen.append(
        json.loads((runs_dir / ".sweeps" / f"{study}.json").read_text())["pid"]))
    result = sweeps.run_sweep(TINY.spec, TINY.train, trials=1, study_name="cli", runs_dir=tmp_path)
    assert seen == [os.getpid()] and result["study"] == "cli"  # recorded before its trials
    sweep = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "sweep"])  # as the CLI's reads
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "sweep-worker", "--study",
                               "another"])
    try:
        sweeps._record_local(tmp_path, "cli", studies.default_storage(tmp_path), sweep.pid)
        assert sweeps.sweep_running(tmp_path, "cli")
        sweeps._record_local(tmp_path, "cli", studies.default_storage(tmp_path), worker.pid)
        assert not sweeps.sweep_running(tmp_path, "cli")
        assert sweeps.sweep_running(tmp_path, "another") is False  # no record of its own
        sweeps._record_local(tmp_path, "another", studies.default_storage(tmp_path), worker.pid)
        assert sweeps.sweep_running(tmp_path, "another")
    finally:
        for process in (sweep, worker):
            process.kill()
            process.wait()
