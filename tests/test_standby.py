"""cifar_core.standby: a standby that no Start uses exits on its own, and never takes a job from outside its runs
folder. Handing it a job is tested with the queue, in tests/test_jobs.py."""

import helpers

from cifar_core import jobs, runs


def test_an_unused_standby_exits_and_takes_no_job_from_outside_its_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_CORE_STANDBY", "1")
    monkeypatch.setenv("CIFAR_CORE_STANDBY_IDLE_S", "2")
    elsewhere = tmp_path / "elsewhere" / "run"
    root = tmp_path / "runs"
    root.mkdir()
    runs.write_json(root / ".standby.job.json", {"run_dir": str(elsewhere), "args": ["--preset", "tiny"]})
    jobs.warm_up(root)
    assert helpers.wait_for(lambda: jobs.standby_pid(root), 20)
    pid = jobs.standby_pid(root)

    assert helpers.wait_for(lambda: not helpers.process_alive(pid), 40)
    assert jobs.standby_pid(root) is None
    assert not (root / ".standby.job.json").exists() and not elsewhere.exists()


def test_the_idle_setting_is_read_leniently():
    from cifar_core import standby

    assert [standby._idle_seconds(s) for s in (None, "", "120", "abc", "nan", "inf", "0", "-5", "1e9")] == [
        600.0, 600.0, 120.0, 600.0, 600.0, 600.0, 600.0, 600.0, 600.0]


def test_a_job_handed_to_the_standby_whose_log_is_a_link_fails_with_its_reason(tmp_path, monkeypatch):
    import argparse

    from cifar_core import __main__ as cli
    from cifar_core import standby

    run = tmp_path / "run"
    run.mkdir()
    (run / "job.log").symlink_to(tmp_path / "elsewhere.txt")
    monkeypatch.setattr(standby, "run_standby", lambda runs_dir, parent: ["train", "--run-dir", str(run)])
    assert cli._cmd_standby(argparse.Namespace(runs_dir=str(tmp_path), parent=None)) == 1
    status = runs.read_status(run)
    assert status["state"] == "failed" and "job.log is a symbolic link" in status["error"]
    assert not (tmp_path / "elsewhere.txt").exists()


def test_a_standby_takes_no_runs_folder_that_is_not_there(tmp_path, monkeypatch):
    from cifar_core import standby

    # filelock had made a mistyped folder's whole tree (and used the working folder for '')
    monkeypatch.chdir(tmp_path)
    assert standby.run_standby(tmp_path / "does" / "not" / "exist") is None and standby.run_standby("") is None
    assert list(tmp_path.iterdir()) == []
