"""cifar_core.runs: atomic JSON, metrics.jsonl after a crash, the run lock across processes, status, identifiers and
model references, and the runs table."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cifar_core import metrics, models, runs

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------------------------
# the lock and the status


def test_write_status_merges(tmp_path):
    runs.write_status(tmp_path, state="running", epoch=1)
    status = runs.write_status(tmp_path, epoch=2)
    assert status["state"] == "running" and status["epoch"] == 2 and abs(status["updated"] - time.time()) < 60
    assert runs.read_json(tmp_path / "status.json")["epoch"] == 2



def test_second_acquire_raises(tmp_path):
    first = runs.RunLock(tmp_path).acquire()
    try:
        with pytest.raises(runs.RunError, match=tmp_path.name):
            runs.RunLock(tmp_path).acquire()
        assert runs.is_locked(tmp_path)
    finally:
        first.release()
    assert not runs.is_locked(tmp_path)
    runs.RunLock(tmp_path).acquire().release()


def test_a_lock_that_cannot_be_opened_is_no_job_and_a_sentence_to_the_one_that_wants_it(tmp_path):
    (tmp_path / "lock").mkdir()  # a folder where the lock file goes (a copied or damaged run)
    runs.write_status(tmp_path, state="running")
    assert not runs.is_locked(tmp_path) and runs.read_status(tmp_path)["state"] == "interrupted"
    with pytest.raises(runs.RunError, match="its lock file cannot be opened"):
        runs.RunLock(tmp_path).acquire()


HOLD = ("import sys, time; from cifar_core.runs import RunLock; lock = RunLock(sys.argv[1]).acquire(); "
        "print('locked', flush=True); time.sleep(120)")


def test_lock_freed_when_the_holder_is_killed(tmp_path):
    runs.write_status(tmp_path, state="running", epoch=1)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(runs.RunError):
            runs.RunLock(tmp_path).acquire()
        assert runs.read_status(tmp_path)["state"] == "running"
        with pytest.raises(runs.RunError, match="still training"):
            runs.delete_run(tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert holder.returncode == -signal.SIGKILL
    assert runs.read_status(tmp_path)["state"] == "interrupted"
    assert runs.read_json(tmp_path / "status.json")["state"] == "running"  # reading does not rewrite the file
    runs.RunLock(tmp_path).acquire().release()


def test_read_status_states(tmp_path):
    assert runs.read_status(tmp_path) == {"state": "unknown", "updated": 0.0, "epoch": 0, "epochs": 0, "step": 0,
                                          "steps_per_epoch": 0, "time": 0.0, "pid": None, "slot": None, "error": None}
    for state in ("running", "stopping"):
        runs.write_status(tmp_path, state=state)
        assert runs.read_status(tmp_path)["state"] == "interrupted"
    for state in ("finished", "stopped", "failed"):
        runs.write_status(tmp_path, state=state)
        assert runs.read_status(tmp_path)["state"] == state
    # a job that was just started has a minute to take its lock
    runs.write_status(tmp_path, state="starting")
    assert runs.read_status(tmp_path)["state"] == "starting"
    runs.write_json(tmp_path / "status.json", {"state": "starting", "updated": time.time() - 120})
    assert runs.read_status(tmp_path)["state"] == "interrupted"


def test_stop_request(tmp_path):
    assert not runs.stop_requested(tmp_path)
    runs.request_stop(tmp_path)
    assert runs.stop_requested(tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# identifiers and model references


@pytest.mark.parametrize("ref", ["../x", "/etc/passwd", "hf://a/b", "gs://b/m.keras", "a/b", "", ".hidden", "-x",
                                 "a b", "x" * 81, "run\0id", None, "..", "a\\b"])
def test_run_path_refuses(ref, tmp_path):
    with pytest.raises(runs.RunError, match="not a run identifier"):
        runs.run_path(ref, tmp_path)


def test_run_path_accepts_identifiers(tmp_path, monkeypatch):
    assert runs.run_path("20260101-120000-tiny_2", tmp_path) == tmp_path / "20260101-120000-tiny_2"
    monkeypatch.setenv("CIFAR_RUNS_DIR", str(tmp_path / "elsewhere"))
    assert runs.run_path("r1") == tmp_path / "elsewhere" / "r1"
    assert runs.RUN_ID.match(runs.new_run_id("Report 2-2 / big!"))
    assert runs.new_run_id("Report 2-2 / big!").endswith("-report-2-2-big")


@pytest.mark.parametrize("ref", ["hf://user/model", "gs://bucket/m.keras", "s3://bucket/m.keras",
                                 "file:///tmp/m.keras", "https://example.com/m.keras", "a\0.keras"])
def test_resolve_model_refuses_remote(ref, tmp_path):
    with pytest.raises(runs.RunError, match="not a local model"):
        models.resolve_model(ref, tmp_path)


def test_resolve_model_local(tmp_path):
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "model.keras").write_bytes(b"zip")
    loose = tmp_path / "loose.keras"
    loose.write_bytes(b"zip")
    assert models.resolve_model("r1", tmp_path / "runs") == (run / "model.keras", run)
    assert models.resolve_model(str(run), tmp_path / "elsewhere") == (run / "model.keras", run)
    assert models.resolve_model(str(loose)) == (loose, None)
    assert models.resolve_model("default")[0].name == "model.keras"
    with pytest.raises(runs.RunError, match="not a run"):
        models.resolve_model(str(loose), allow_paths=False)
    with pytest.raises(runs.RunError, match="No model"):
        models.resolve_model("r2", tmp_path / "runs")
    with pytest.raises(runs.RunError, match="No model"):
        models.resolve_model(str(tmp_path / "loose.h5"))


def test_class_names_for(tmp_path):
    runs.write_json(tmp_path / "config.json", {"class_names": ["x", "y", "z"]})
    assert models.class_names_for(tmp_path, 3) == ("x", "y", "z")
    for torn in (5, "abc", ["x", 2, "z"], ["x", "y"], None):  # a torn or hostile config.json: the defaults
        runs.write_json(tmp_path / "config.json", {"class_names": torn})
        assert models.class_names_for(tmp_path, 3) == ("class 0", "class 1", "class 2"), torn
    assert models.class_names_for(tmp_path, 10)[0] == "airplane"
    assert models.class_names_for(None, 4) == ("class 0", "class 1", "class 2", "class 3")
    # a 10-class run with names of its own that cannot be used is not labelled with CIFAR-10's
    runs.write_json(tmp_path / "config.json", {"class_names": [f"fruit{i}" for i in range(9)] + ["x" * 256]})
    assert models.class_names_for(tmp_path, 10) == tuple(f"class {i}" for i in range(10))
    runs.write_json(tmp_path / "config.json", {"class_names": [f"fruit{i}" for i in range(9)] + ["x" * 255]})
    assert models.class_names_for(tmp_path, 10)[-1] == "x" * 255  # a folder name's longest


# ---------------------------------------------------------------------------------------------------------------
# the runs table


def make_run(root, run_id, state, epochs, val, spec_name="tiny", model=True):
    run = root / run_id
    run.mkdir(parents=True)
    runs.write_json(run / "config.json", {"spec": {"name": spec_name}, "params": 5418, "train": {"epochs": epochs},
                                          "created": "2026-01-01 12:00:00"})
    runs.write_status(run, state=state)
    records = []
    for e, v in enumerate(val, start=1):
        records += [{"kind": "batch", "epoch": e, "step": 1, "time": e - 0.5, "loss": 1.0},
                    {"kind": "epoch", "epoch": e, "step": 2, "time": float(e), "val_accuracy": v}]
    metrics.append_metrics(run, records)
    if model:
        (run / "model.keras").write_bytes(b"zip")
    return run


def test_list_and_summarize(tmp_path):
    make_run(tmp_path, "20260101-a", "finished", 3, [0.3, None, 0.5])
    make_run(tmp_path, "20260102-b", "running", 10, [0.2], spec_name="fast", model=False)
    (tmp_path / "not a run").mkdir()
    (tmp_path / "no-config").mkdir()
    (tmp_path / "stray.txt").write_text("x")
    rows = runs.list_runs(tmp_path)
    assert [r["run_id"] for r in rows] == ["20260102-b", "20260101-a"]
    b, a = rows
    assert a == {"run_id": "20260101-a", "name": "20260101-a", "model": "tiny", "params": 5418, "epochs_done": 3,
                 "epochs": 3, "minutes": None, "best_val_accuracy": 0.5, "last_val_accuracy": 0.5, "train_time_s": 3.0,
                 "state": "finished",
                 "has_model": True, "created": "2026-01-01 12:00:00", "problem": None, "error": None}
    assert b["state"] == "interrupted" and b["model"] == "fast" and b["has_model"] is False
    assert b["epochs_done"] == 1 and b["best_val_accuracy"] == 0.2
    assert runs.list_runs(tmp_path / "missing") == []


def test_a_run_whose_status_or_metrics_cannot_be_read_is_listed_with_its_reason(tmp_path):
    """DESIGN.md: a run with unreadable files is listed with its reason; before, only config.json's were named."""
    make_run(tmp_path, "20260101-torn", "finished", 3, [0.5]).joinpath("status.json").write_text("{broken")
    make_run(tmp_path, "20260102-list", "finished", 3, [0.5]).joinpath("status.json").write_text("[1, 2]")
    runs.write_json(make_run(tmp_path, "20260103-odd", "finished", 3, [0.5]) / "status.json", {"state": "bogus"})
    metrics_folder = make_run(tmp_path, "20260104-mf", "finished", 3, [])
    (metrics_folder / "metrics.jsonl").unlink()
    (metrics_folder / "metrics.jsonl").mkdir()
    failed = make_run(tmp_path, "20260105-failed", "failed", 3, [0.5])
    runs.write_status(failed, error="The data source 'x' does not exist.")
    rows = {r["run_id"]: r for r in runs.list_runs(tmp_path)}
    for run_id in ("20260101-torn", "20260102-list", "20260103-odd"):
        assert rows[run_id]["problem"] == "its status.json is not readable, or names no state it can be in."
        assert rows[run_id]["state"] == "unknown" and rows[run_id]["has_model"], run_id  # the model is still there
    assert rows["20260104-mf"]["problem"] == "its metrics.jsonl is not a regular file."
    assert rows["20260105-failed"]["problem"] is None  # its files are fine: why it failed is its error
    assert rows["20260105-failed"]["error"] == "The data source 'x' does not exist."
    assert rows["20260101-torn"]["error"] is None


def test_a_time_budgets_epochs_are_what_its_job_planned(tmp_path):
    run = make_run(tmp_path, "20260101-a", "finished", 1, [0.3, 0.4])
    runs.write_json(run / "config.json", {**runs.read_config(run), "train": {"epochs": 1, "minutes": 0.2}})
    runs.write_status(run, epochs=2)
    (row,) = runs.list_runs(tmp_path)
    assert (row["epochs_done"], row["epochs"], row["minutes"]) == (2, 2, 0.2)  # not the settings' 1


def test_a_run_is_listed_once_however_many_links_lead_to_it(tmp_path):
    make_run(tmp_path / "runs", "20260101-a", "finished", 1, [0.3])
    make_run(tmp_path / "elsewhere", "20260102-b", "finished", 1, [0.3])
    (tmp_path / "runs" / "20260109-link-to-a").symlink_to(tmp_path / "runs" / "20260101-a")
    (tmp_path / "runs" / "20260103-link-to-b").symlink_to(tmp_path / "elsewhere" / "20260102-b")
    (tmp_path / "runs" / "20260104-second-link-to-b").symlink_to(tmp_path / "elsewhere" / "20260102-b")
    (tmp_path / "runs" / "20260105-loop").symlink_to("20260105-loop")
    # the folder itself, not the link made later; a run linked in from elsewhere once, by its first link
    assert [r["run_id"] for r in runs.list_runs(tmp_path / "runs")] == ["20260103-link-to-b", "20260101-a"]


def test_the_saved_models_accuracy_is_the_last_epochs_not_the_best(tmp_path):
    make_run(tmp_path, "20260101-a", "finished", 3, [0.3, 0.6, 0.5])
    (row,) = runs.list_runs(tmp_path)
    assert (row["best_val_accuracy"], row["last_val_accuracy"]) == (0.6, 0.5)
    make_run(tmp_path, "20260102-b", "finished", 2, [0.4, None])  # the last epoch was not validated
    assert runs.list_runs(tmp_path)[0]["last_val_accuracy"] is None


def test_the_runs_tables_rows(tmp_path):
    make_run(tmp_path, "20260101-a", "finished", 3, [0.3, None, 0.5])
    (tmp_path / "20260103-torn").mkdir()
    (tmp_path / "20260103-torn" / "config.json").write_text("{")
    torn, a = runs.list_runs(tmp_path)
    assert runs.table_rows([a, torn]) == [
        {"name": "20260101-a", "model": "tiny", "params": 5418, "epochs": "3/3", "best val accuracy": 0.5,
         "last val accuracy": 0.5, "train time (s)": 3.0, "state": "finished", "saved model": True,
         "run id": "20260101-a", "problem": ""},
        {"name": "20260103-torn", "model": "?", "params": None, "epochs": "0/?", "best val accuracy": None,
         "last val accuracy": None, "train time (s)": None, "state": "unreadable", "saved model": False,
         "run id": "20260103-torn", "problem": "its config.json is not valid JSON."}]
    assert runs.table_rows([]) == []
    config = runs.read_config(tmp_path / "20260101-a")
    for minutes, shown in ((0.2, "3 in 0.2 min"), (-1, "3/3"), ("5", "3/3"), (float("nan"), "3/3"), (True, "3/3")):
        runs.write_json(tmp_path / "20260101-a" / "config.json", {**config, "train": {"epochs": 3, "minutes": minutes}})
        assert runs.table_rows([runs.summarize(tmp_path / "20260101-a")])[0]["epochs"] == shown, minutes
    runs.write_status(tmp_path / "20260101-a", state="stopped")  # a budget not over: not "3 in 0.2 min"
    runs.write_json(tmp_path / "20260101-a" / "config.json", {**config, "train": {"epochs": 3, "minutes": 0.2}})
    assert runs.table_rows([runs.summarize(tmp_path / "20260101-a")])[0]["epochs"] == "3 of 0.2 min"


def test_rename_run(tmp_path):
    run = make_run(tmp_path, "r1", "finished", 1, [0.1])
    runs.rename_run(run, "  my best run  ")
    assert runs.run_label(run) == "my best run" and runs.summarize(run)["name"] == "my best run"
    for bad in ("", "   ", "x" * 81):
        with pytest.raises(runs.RunError, match="1 to 80"):
            runs.rename_run(run, bad)
    assert runs.run_label(run) == "my best run"
    from cifar_core.presets import get_preset

    tiny = get_preset("tiny")
    with pytest.raises(runs.RunError, match="the one given has 81"):
        runs.create_run(tmp_path / "new", tiny.spec, tiny.train, name="x" * 81)
    assert not (tmp_path / "new").exists()  # refused before anything was made


def test_delete_run(tmp_path):
    done = make_run(tmp_path, "done", "finished", 1, [0.1])
    runs.delete_run(done)
    assert not done.exists()
    live = make_run(tmp_path, "live", "running", 1, [0.1])
    lock = runs.RunLock(live).acquire()
    try:
        with pytest.raises(runs.RunError, match="still training"):
            runs.delete_run(live)
        assert live.exists()
    finally:
        lock.release()
    runs.delete_run(live)  # a killed job's run reads as interrupted and can be deleted
    assert not live.exists()
    assert os.listdir(tmp_path) == []
    # gone already (deleted in another session): said so, not "The folder ... cannot be changed"
    with pytest.raises(runs.RunError, match=r"^The run live could not be deleted: it is no longer there"):
        runs.delete_run(live)
    with pytest.raises(runs.RunError, match=r"^The run cannot be renamed: it is no longer there"):
        runs.rename_run(live, "mine")


def test_read_job_log(tmp_path):
    run = make_run(tmp_path, "r", "finished", 1, [0.5])
    (run / "job.log").write_text("\n".join(f"line {i}" for i in range(30)))
    assert runs.read_job_log("r", tmp_path, lines=2) == "line 28\nline 29"
    (run / "job.log").write_text("x" * 100_000 + "\nthe end")  # only its last 64 kB are read
    assert runs.read_job_log("r", tmp_path) == "x" * (64 * 2**10 - 8) + "\nthe end"
    assert runs.read_job_log("nothing", tmp_path) == ""


def test_a_page_starts_only_runs_whose_data_source_it_offers(tmp_path):
    run = make_run(tmp_path, "r", "stopped", 1, [0.5])
    runs.write_config(run, train={"data": "/elsewhere/secret"})
    runs.refuse_unoffered(run, None)  # the command line: any source
    runs.refuse_unoffered(run, lambda source: source == "/elsewhere/secret")
    with pytest.raises(runs.RunError, match="This run's data source is not offered by this server"):
        runs.refuse_unoffered(run, lambda source: source in ("", "keras", "sample"))
    runs.write_config(run, train={"data": ["not", "a", "path"]})
    with pytest.raises(runs.RunError):
        runs.refuse_unoffered(run, lambda source: True)


def test_runs_started_at_once_get_a_folder_each_and_never_share_a_record(tmp_path, monkeypatch):
    """Two `train` commands in the same second took one run id: the second wrote its spec over the first's record
    while the first trained its own model there."""
    import dataclasses

    from cifar_core.presets import get_preset

    monkeypatch.setattr(runs.time, "strftime", lambda fmt, *a: "20260101-000000" if "%H" in fmt else "2026-01-01")
    first, second = runs.claim_run_dir("tiny", tmp_path), runs.claim_run_dir("tiny", tmp_path)
    assert (first.name, second.name) == ("20260101-000000-tiny", "20260101-000000-tiny-2")
    tiny = get_preset("tiny")
    runs.create_run(first, tiny.spec, tiny.train)
    record = (first / "config.json").read_bytes()
    with pytest.raises(runs.RunError, match="was just taken by another run; nothing in it was touched"):
        runs.create_run(first, tiny.spec, dataclasses.replace(tiny.train, seed=2))
    assert (first / "config.json").read_bytes() == record
    runs.check_record(first, tiny.spec, tiny.train)
    with pytest.raises(runs.RunError, match="made by another job for another model or other settings"):
        runs.check_record(first, tiny.spec, dataclasses.replace(tiny.train, seed=2))
    # a time budget is in the status from the start, so the page never words the run by its unused Epochs box
    runs.create_run(second, tiny.spec, dataclasses.replace(tiny.train, minutes=0.2))
    assert [runs.read_status(run).get("budget_s") for run in (first, second)] == [0, 12.0]


def test_a_status_or_label_file_larger_than_any_the_job_writes_is_not_read(tmp_path):
    # read for every run on every Runs and Train page: 4 MB ones (the limit of other JSON) had taken seconds each
    padding = "x" * runs.MAX_STATUS_BYTES
    (tmp_path / "status.json").write_text(json.dumps({"state": "finished", "note": padding}))
    (tmp_path / "label.json").write_text(json.dumps({"label": "mine", "note": padding}))
    assert runs.read_status(tmp_path)["state"] == "unknown"
    assert runs.run_label(tmp_path) == tmp_path.name
    (tmp_path / "label.json").write_text(json.dumps({"label": "mine"}))
    assert runs.run_label(tmp_path) == "mine"


def test_a_run_whose_config_is_a_link_is_listed_with_its_reason(tmp_path):
    (tmp_path / "20260101-a").mkdir()
    (tmp_path / "20260101-a" / "config.json").symlink_to(tmp_path / "gone.json")  # left out before
    (row,) = runs.list_runs(tmp_path)
    assert row["state"] == "unreadable" and row["problem"] == "its config.json is a link, which is not followed."


def test_a_runs_files_are_never_read_through_a_link(tmp_path):
    # a run's own files are written by renaming, never as links: one there would serve or show any file
    run_dir = make_run(tmp_path, "20260101-a", "finished", 3, [0.5])
    assert runs.summarize(run_dir)["has_model"]
    (run_dir / "model.keras").unlink()
    (run_dir / "model.keras").symlink_to("/etc/passwd")
    assert runs.summarize(run_dir)["has_model"] is False
    runs.write_json(run_dir / "status.json", {"state": "stopped", "time": -30})  # a clock set back: no time
    assert runs.read_status(run_dir)["time"] == 0.0
