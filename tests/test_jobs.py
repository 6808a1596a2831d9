"""cifar_core.jobs: the refusals, the queue (its order, cancel, move up, slots, and real jobs
that hand over to the next however they end), and the standby process that Start hands its job to (the AppTests of
the Train page start real jobs the plain way)."""

import dataclasses
import os
import signal
import time
from pathlib import Path

import helpers
import pytest

from cifar_core import jobs, runs
from cifar_core import spec as S
from cifar_core.presets import get_preset


def _run(root, run_id, state):
    run = root / run_id
    run.mkdir(parents=True)
    runs.write_json(run / "config.json", {"spec": {"name": "tiny"}, "train": {"epochs": 1}})
    runs.write_status(run, state=state)
    return run


def test_one_job_at_a_time_and_the_next_is_queued(tmp_path, monkeypatch):
    monkeypatch.delenv("CIFAR_CORE_SLOTS", raising=False)
    monkeypatch.setattr(jobs, "gpu_ids", lambda: ())
    spawned = []
    monkeypatch.setattr(jobs, "spawn", lambda command, log, gpu=None: spawned.append(command) or 4242)
    busy = _run(tmp_path, "busy", "running")
    _run(tmp_path, "old", "stopped")
    assert jobs.active_job(tmp_path) is None  # running, but nobody holds its lock: interrupted
    lock = runs.RunLock(busy).acquire()
    try:
        assert jobs.active_job(tmp_path)["run_id"] == "busy"
        first = jobs.start_job(get_preset("tiny").spec, get_preset("tiny").train, tmp_path)
        second = jobs.start_job(get_preset("tiny").spec, get_preset("tiny").train, tmp_path, name="second")
        assert spawned == []  # both wait behind the busy job
        assert [r["run_id"] for r in jobs.queued_runs(tmp_path)] == [first, second]
        assert jobs.queue_label(first, tmp_path) == "queued, 1st" and jobs.queue_label(second, tmp_path) == \
            "queued, 2nd"
        assert jobs.start_next(tmp_path) == []  # no free slot
        with pytest.raises(runs.RunError, match="is training"):
            jobs.resume_job("old", tmp_path)
        jobs.move_up(second, tmp_path)
        assert [r["run_id"] for r in jobs.queued_runs(tmp_path)] == [second, first]
        jobs.move_up(second, tmp_path)  # already first: nothing changes
        assert jobs.queue_position(second, tmp_path) == 1 and jobs.queue_position("old", tmp_path) is None
    finally:
        lock.release()
    # The busy job ended (its lock is free): the first in the queue starts, in slot 0; the other waits.
    assert jobs.start_next(tmp_path) == [second]
    assert spawned == [["train", "--run-dir", str((tmp_path / second).resolve())]]
    assert runs.read_status(tmp_path / second)["state"] == "starting"
    assert runs.read_status(tmp_path / second)["pid"] == 4242 and runs.read_status(tmp_path / second)["slot"] == 0
    assert jobs.queue_label(first, tmp_path) == "queued, 1st"
    jobs.cancel_queued(first, tmp_path)
    assert not (tmp_path / first).exists()
    with pytest.raises(runs.RunError, match="no longer queued"):
        jobs.cancel_queued(second, tmp_path)


def test_the_run_shown_is_the_first_wanted_that_exists_else_the_job_training(tmp_path):
    busy = _run(tmp_path, "busy", "running")
    _run(tmp_path, "old", "stopped")
    assert jobs.shown_run((None, "gone", "../old", "old"), tmp_path) == "old"  # no such run, not a run id
    assert jobs.shown_run((None, None), tmp_path) is None  # busy's job holds no lock: interrupted, not training
    lock = runs.RunLock(busy).acquire()
    try:
        assert jobs.shown_run((None, "gone"), tmp_path) == "busy"
        assert jobs.shown_run(("old", None), tmp_path) == "old"
    finally:
        lock.release()


def test_retrain_starts_the_same_model_and_settings_on_another_source(tmp_path, monkeypatch):
    monkeypatch.delenv("CIFAR_CORE_SLOTS", raising=False)
    monkeypatch.setattr(jobs, "gpu_ids", lambda: ())
    monkeypatch.setattr(jobs, "spawn", lambda command, log, gpu=None: 4242)
    tiny = get_preset("tiny")
    config = dataclasses.replace(tiny.train, data="keras", epochs=3)
    failed = runs.create_run(tmp_path / "20260101-000000-tiny", tiny.spec, config, name="mine", state="failed")
    again = jobs.retrain(failed, "sample", tmp_path)
    assert again != failed.name and runs.run_label(tmp_path / again) == "mine"
    assert runs.read_spec_and_config(tmp_path / again) == (tiny.spec, dataclasses.replace(config, data="sample"))
    assert runs.read_status(tmp_path / again)["pid"] == 4242  # started, not queued: the failed run holds no slot
    assert runs.read_spec_and_config(failed)[1] == config  # the failed run is left as it was


def test_slots_give_each_gpu_its_job(tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "gpu_ids", lambda: ("0", "1"))
    monkeypatch.delenv("CIFAR_CORE_SLOTS", raising=False)
    launched = []
    monkeypatch.setattr(jobs, "spawn", lambda command, log, gpu=None: launched.append(gpu) or 4000 + len(launched))
    tiny = get_preset("tiny")
    ids = [jobs.start_job(tiny.spec, tiny.train, tmp_path) for _ in range(3)]
    assert launched == ["0", "1"]  # two GPUs, two jobs at once, each with its own
    assert [runs.read_status(tmp_path / i)["state"] for i in ids] == ["starting", "starting", "queued"]
    monkeypatch.setenv("CIFAR_CORE_SLOTS", "3")
    assert jobs.slots() == 3
    for setting in ("none", "²", "0", "65", "30000000"):  # "²" is a digit to str.isdigit, not to int
        monkeypatch.setenv("CIFAR_CORE_SLOTS", setting)
        with pytest.raises(runs.RunError, match="CIFAR_CORE_SLOTS must be a whole number from 1 to 64"):
            jobs.slots()
    # refused before a run is made: a refused --queue had left a queued run, which the next `runs` trained
    with pytest.raises(runs.RunError, match="CIFAR_CORE_SLOTS must be"):
        jobs.start_job(tiny.spec, tiny.train, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if runs.RUN_ID.match(p.name)) == sorted(ids)


def test_ordinal():
    assert [jobs.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]


def _wait_state(run_dir, states, seconds=240):
    assert helpers.wait_for(lambda: runs.read_status(run_dir)["state"] in states, seconds), \
        (runs.read_status(run_dir), (run_dir / "job.log").read_text() if (run_dir / "job.log").exists() else "")
    return runs.read_status(run_dir)["state"]


def test_a_queued_run_starts_when_the_job_ahead_finishes_fails_stops_or_is_killed(tmp_path, monkeypatch):
    """Five real jobs in one slot, queued at once: each ending job's own process starts the next, and after a
    SIGKILL (no process left to do it) whoever polls start_next does."""
    monkeypatch.setenv("CIFAR_CORE_SLOTS", "1")
    tiny = get_preset("tiny")
    quick = dataclasses.replace(tiny.train, data="sample", limit=300, epochs=1)
    long = dataclasses.replace(quick, epochs=500)
    configs = {"finishes": quick, "fails": dataclasses.replace(quick, data=str(tmp_path / "no-such-data")),
               "stopped": long, "killed": long, "last": long}
    started = time.monotonic()
    ids = {role: jobs.start_job(tiny.spec, config, tmp_path, name=role) for role, config in configs.items()}
    # Starts within one second take -2, -3, ...: waiting a second for each let the first job end before the rest
    # were queued (the fresh-clone run of this test failed so).
    assert time.monotonic() - started < 3 and len(set(ids.values())) == 5
    dirs = {role: tmp_path / run_id for role, run_id in ids.items()}
    assert [jobs.queue_label(ids[r], tmp_path) for r in configs][1:] == \
        ["queued, 1st", "queued, 2nd", "queued, 3rd", "queued, 4th"]
    assert jobs.queue_label(ids["finishes"], tmp_path) in ("starting", "running", "finished")

    assert _wait_state(dirs["finishes"], ("finished", "failed", "interrupted")) == "finished"
    assert _wait_state(dirs["fails"], ("finished", "failed", "interrupted")) == "failed"  # started by the first
    assert runs.read_status(dirs["fails"])["failed_on"] == "data"
    assert _wait_state(dirs["stopped"], ("running",)) == "running"  # started by the failed job's process
    assert runs.read_status(dirs["killed"])["state"] == "queued"
    assert jobs.stop_job(ids["stopped"], tmp_path) == "stopped"
    assert _wait_state(dirs["killed"], ("running",)) == "running"
    os.killpg(runs.read_status(dirs["killed"])["pid"], signal.SIGKILL)
    assert _wait_state(dirs["killed"], ("interrupted",), 30) == "interrupted"
    assert runs.read_status(dirs["last"])["state"] == "queued"  # nobody was left to start it...
    assert jobs.start_next(tmp_path) == [ids["last"]]  # ...until a page or `runs` polls
    try:
        assert _wait_state(dirs["last"], ("running",)) == "running"
    finally:
        jobs.stop_job(ids["last"], tmp_path)
    assert jobs.queued_runs(tmp_path) == []


def test_start_job_refuses_invalid_input_before_creating_anything(tmp_path):
    import dataclasses

    with pytest.raises(S.SpecError):
        jobs.start_job(S.ModelSpec("bad", (S.Conv2D(0), S.Flatten())), get_preset("tiny").train, tmp_path)
    with pytest.raises(S.SpecError, match="epochs"):
        jobs.start_job(get_preset("tiny").spec, dataclasses.replace(get_preset("tiny").train, epochs=0), tmp_path)
    wide = S.ModelSpec("wide", (S.Conv2D(1365, 3, padding="same"), *[S.Activation("relu")] * 60,
                                S.GlobalMaxPooling2D()))  # 51,880 parameters, 85 M values an image
    with pytest.raises(S.SpecError, match="batch_size 64 asks for about 40.7 GB of activations"):
        jobs.start_job(wide, get_preset("tiny").train, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_only_stopped_interrupted_or_failed_runs_resume(tmp_path):
    _run(tmp_path, "done", "finished")
    with pytest.raises(runs.RunError, match="Only a stopped"):
        jobs.resume_job("done", tmp_path)
    assert runs.read_status(tmp_path / "done")["state"] == "finished"


def test_stop_job_of_a_finished_run(tmp_path):
    run = _run(tmp_path, "done", "finished")
    assert jobs.stop_job("done", tmp_path, wait_s=0.5) == "finished"
    assert runs.stop_requested(run)


def _standbys(runs_dir) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"standby" in args and str(runs_dir).encode() in args and helpers.process_alive(int(cmdline.parent.name)):
            found.append(int(cmdline.parent.name))
    return found


def test_start_hands_the_job_to_the_waiting_standby(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_CORE_STANDBY", "1")
    monkeypatch.setenv("CIFAR_CORE_STANDBY_IDLE_S", "60")
    jobs.warm_up(tmp_path)
    assert helpers.wait_for(lambda: jobs.standby_pid(tmp_path), 20)
    pid = jobs.standby_pid(tmp_path)
    jobs.warm_up(tmp_path)  # one is waiting: no second standby
    time.sleep(1.0)
    assert _standbys(tmp_path.resolve()) == [pid]

    tiny = get_preset("tiny")
    run_id = jobs.start_job(tiny.spec, dataclasses.replace(tiny.train, data="sample"), tmp_path)
    run_dir = runs.run_path(run_id, tmp_path)

    assert runs.read_status(run_dir)["pid"] == pid
    ended = ("finished", "failed", "interrupted")
    assert helpers.wait_for(lambda: runs.read_status(run_dir).get("state") in ended, 180)
    assert runs.read_status(run_dir)["state"] == "finished", (run_dir / "job.log").read_text()
    assert "Training on" in (run_dir / "job.log").read_text()
    assert jobs.standby_pid(tmp_path) is None  # it let go of the standby lock when it took the job...
    assert helpers.wait_for(lambda: not helpers.process_alive(pid), 30)  # ...and ended with it


def test_warm_up_is_off_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_CORE_STANDBY", "0")
    jobs.warm_up(tmp_path)
    time.sleep(0.5)
    assert jobs.standby_pid(tmp_path) is None and not (tmp_path / ".standby.log").exists()


def test_train_queue_adds_the_run_and_returns_at_once(tmp_path):

    busy = _run(tmp_path, "busy", "running")
    lock = runs.RunLock(busy).acquire()
    try:
        result = helpers.run_cli("train", "--preset", "tiny", "--data", "sample", "--queue", "--runs-dir", tmp_path,
                                 timeout=60)
        assert result.returncode == 0, result.stderr
        run_dir = Path(result.stdout.strip().splitlines()[-1])
        assert run_dir.parent == tmp_path and runs.read_status(run_dir)["state"] == "queued"
        assert jobs.queue_label(run_dir.name, tmp_path) == "queued, 1st"
        assert runs.read_spec_and_config(run_dir)[1].data == "sample"
        refused = helpers.run_cli("train", "--preset", "tiny", "--queue", "--run-dir", tmp_path / "x", timeout=60)
        assert refused.returncode == 2 and "--queue makes a new run" in refused.stderr
        jobs.cancel_queued(run_dir.name, tmp_path)
    finally:
        lock.release()
