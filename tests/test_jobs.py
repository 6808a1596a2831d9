"""cifar_core.jobs: progress arithmetic, the refusals, and the standby process that Start hands its job to (the
AppTests of the Train page start real jobs the plain way)."""

import dataclasses
import time
from pathlib import Path

import pytest

from cifar_core import jobs, runs
from cifar_core import spec as S
from cifar_core.presets import get_preset
from cifar_core.train import estimate_epoch_seconds


def test_job_progress_by_hand():
    # epoch 2 of 4 under way, at step 5 of 10: 1.5 epochs done = 37.5%; 30 s so far -> 30 * 0.625 / 0.375 = 50 s left
    p = jobs.job_progress({"epochs": 4, "steps_per_epoch": 10, "epoch": 2, "step": 5, "time": 30.0})
    assert p["fraction"] == pytest.approx(0.375) and p["elapsed_s"] == 30.0 and p["remaining_s"] == pytest.approx(50)
    # at step 0 (just resumed) `epoch` counts completed epochs
    assert jobs.job_progress({"epochs": 4, "steps_per_epoch": 10, "epoch": 2, "step": 0})["fraction"] == 0.5
    assert jobs.job_progress({}) == {"fraction": 0.0, "elapsed_s": 0.0, "remaining_s": None}
    done = jobs.job_progress({"epochs": 2, "steps_per_epoch": 3, "epoch": 2, "step": 3, "time": 8})
    assert done["fraction"] == 1.0 and done["remaining_s"] == 0


def test_estimate_epoch_seconds():
    # tiny: 1,622,336 MACs per image; 1000 x (0.094 ms + 1,622,336 x 0.0211 ns) = 0.094 + 0.0342 s
    assert estimate_epoch_seconds(get_preset("tiny").spec, 1000) == pytest.approx(0.094 + 1_622_336 * 0.0211e-6)
    # fast: 118,147,360 MACs; 45,000 images -> about 116 s, the mean epoch measured
    assert 105 < estimate_epoch_seconds(get_preset("fast").spec, 45_000) < 125
    with pytest.raises(S.SpecError):
        estimate_epoch_seconds(S.ModelSpec("bad", (S.Conv2D(8),)), 10)


def _run(root, run_id, state):
    run = root / run_id
    run.mkdir(parents=True)
    runs.write_json(run / "config.json", {"spec": {"name": "tiny"}, "train": {"epochs": 1}})
    runs.write_status(run, state=state)
    return run


def test_one_job_at_a_time(tmp_path):
    busy = _run(tmp_path, "busy", "running")
    _run(tmp_path, "old", "stopped")
    assert jobs.active_job(tmp_path) is None  # running, but nobody holds its lock: interrupted
    lock = runs.RunLock(busy).acquire()
    try:
        assert jobs.active_job(tmp_path)["run_id"] == "busy"
        with pytest.raises(runs.RunError, match="is training"):
            jobs.start_job(get_preset("tiny").spec, get_preset("tiny").train, tmp_path)
        with pytest.raises(runs.RunError, match="is training"):
            jobs.resume_job("old", tmp_path)
    finally:
        lock.release()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["busy", "old"]  # no new run


def test_start_job_refuses_invalid_input_before_creating_anything(tmp_path):
    import dataclasses

    with pytest.raises(S.SpecError):
        jobs.start_job(S.ModelSpec("bad", (S.Conv2D(0), S.Flatten())), get_preset("tiny").train, tmp_path)
    with pytest.raises(S.SpecError, match="epochs"):
        jobs.start_job(get_preset("tiny").spec, dataclasses.replace(get_preset("tiny").train, epochs=0), tmp_path)
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


def test_read_job_log(tmp_path):
    run = _run(tmp_path, "r", "finished")
    (run / "job.log").write_text("\n".join(f"line {i}" for i in range(30)))
    assert jobs.read_job_log("r", tmp_path, lines=2) == "line 28\nline 29"
    assert jobs.read_job_log("nothing", tmp_path) == ""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False


def _standbys(runs_dir) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"standby" in args and str(runs_dir).encode() in args and _alive(int(cmdline.parent.name)):
            found.append(int(cmdline.parent.name))
    return found


def _wait(condition, seconds: float):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_start_hands_the_job_to_the_waiting_standby(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_CORE_STANDBY", "1")
    monkeypatch.setenv("CIFAR_CORE_STANDBY_IDLE_S", "60")
    jobs.warm_up(tmp_path)
    assert _wait(lambda: jobs.standby_pid(tmp_path), 20)
    pid = jobs.standby_pid(tmp_path)
    jobs.warm_up(tmp_path)  # one is waiting: no second standby
    time.sleep(1.0)
    assert _standbys(tmp_path.resolve()) == [pid]

    tiny = get_preset("tiny")
    run_id = jobs.start_job(tiny.spec, dataclasses.replace(tiny.train, data="sample"), tmp_path)
    run_dir = runs.run_path(run_id, tmp_path)

    assert runs.read_status(run_dir)["pid"] == pid
    assert _wait(lambda: runs.read_status(run_dir).get("state") in ("finished", "failed", "interrupted"), 180)
    assert runs.read_status(run_dir)["state"] == "finished", (run_dir / "job.log").read_text()
    assert "Training on" in (run_dir / "job.log").read_text()
    assert jobs.standby_pid(tmp_path) is None  # it let go of the standby lock when it took the job...
    assert _wait(lambda: not _alive(pid), 30)  # ...and ended with it


def test_an_unused_standby_exits_and_takes_no_job_from_outside_its_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_CORE_STANDBY", "1")
    monkeypatch.setenv("CIFAR_CORE_STANDBY_IDLE_S", "2")
    elsewhere = tmp_path / "elsewhere" / "run"
    root = tmp_path / "runs"
    root.mkdir()
    runs.write_json(root / ".standby.job.json", {"run_dir": str(elsewhere), "args": ["--preset", "tiny"]})
    jobs.warm_up(root)
    assert _wait(lambda: jobs.standby_pid(root), 20)
    pid = jobs.standby_pid(root)

    assert _wait(lambda: not _alive(pid), 40)
    assert jobs.standby_pid(root) is None
    assert not (root / ".standby.job.json").exists() and not elsewhere.exists()


def test_warm_up_is_off_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_CORE_STANDBY", "0")
    jobs.warm_up(tmp_path)
    time.sleep(0.5)
    assert jobs.standby_pid(tmp_path) is None and not (tmp_path / ".standby.log").exists()
