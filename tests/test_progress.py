"""cifar_core.progress: a job's progress, its bar's words and the page's redraws, worked out by hand from status
files."""

import pytest

from cifar_core.progress import job_progress, phase_changed, progress_label


def test_job_progress_by_hand():
    # epoch 2 of 4 under way, at step 5 of 10: 1.5 epochs done = 37.5%; 30 s so far -> 30 * 0.625 / 0.375 = 50 s left
    p = job_progress({"epochs": 4, "steps_per_epoch": 10, "epoch": 2, "step": 5, "time": 30.0})
    assert p["fraction"] == pytest.approx(0.375) and p["elapsed_s"] == 30.0 and p["remaining_s"] == pytest.approx(50)
    # at step 0 (just resumed) `epoch` counts completed epochs
    assert job_progress({"epochs": 4, "steps_per_epoch": 10, "epoch": 2, "step": 0})["fraction"] == 0.5
    assert job_progress({}) == {"fraction": 0.0, "elapsed_s": 0.0, "remaining_s": None}
    done = job_progress({"epochs": 2, "steps_per_epoch": 3, "epoch": 2, "step": 3, "time": 8})
    assert done["fraction"] == 1.0 and done["remaining_s"] == 0
    # a time budget's clock is the progress, and a finished run is whole though its budget ended 0.5 s early
    budget = {"epochs": 24, "steps_per_epoch": 29, "epoch": 24, "step": 8, "budget_s": 12.0, "time": 11.5}
    assert job_progress({**budget, "state": "running"})["fraction"] == pytest.approx(11.5 / 12)
    assert job_progress({**budget, "state": "finished"})["fraction"] == 1.0
    # the pace from the fit's first step: 2 epochs of 10 steps, the first step ending at 4 s (imports, tracing),
    # 0.1 epochs in; at step 5 after 6 s: 0.25 of the run done, 0.2 of it in the last 2 s -> 2 * 0.75 / 0.2 s left
    paced = {"epochs": 2, "steps_per_epoch": 10, "epoch": 1, "step": 5, "time": 6.0, "pace_from": [4.0, 0.1]}
    assert job_progress(paced)["remaining_s"] == pytest.approx(2 * 0.75 / 0.2)
    assert job_progress({**paced, "step": 1, "time": 4.0})["remaining_s"] is None  # no pace yet at step 1
    for torn in ([4.0], ["x", 0.1], [1e308, 0.1], [4.0, float("nan")], "4"):  # the plain extrapolation
        assert job_progress({**paced, "pace_from": torn})["remaining_s"] == pytest.approx(6 * 0.75 / 0.25)
    # a clock set back: a time budget's bar stays within 0..1 (-0.5 had taken the Train page down)
    assert job_progress({**budget, "state": "stopped", "time": -30})["fraction"] == 0.0


def test_progress_label_by_hand():
    assert progress_label({"epochs": 4, "steps_per_epoch": 10, "epoch": 1, "step": 5}) == "epoch 1/4, step 5/10"
    assert progress_label({"epochs": 4, "steps_per_epoch": 10, "epoch": 2, "step": 0}) == "2 of 4 epochs done"
    assert progress_label({"epochs": 4, "epoch": 2, "step": 3}) == "2 of 4 epochs done"  # steps not known yet
    assert progress_label({}) == "0 of ? epochs done"
    budget_ended = {"state": "finished", "budget_s": 12.0, "epochs": 24, "steps_per_epoch": 29, "epoch": 24, "step": 8}
    assert progress_label(budget_ended) == "time budget spent in epoch 24, at step 8 of 29"
    assert progress_label({**budget_ended, "state": "running", "epochs": 23}) == "epoch 24 of about 23, step 8/29"
    assert progress_label({**budget_ended, "state": "running", "step": 0}) == "24 of about 24 epochs done"
    assert progress_label({**budget_ended, "step": 0}) == "time budget spent after 24 epochs"
    # a budget run not started yet: the Epochs box it ignores ("0 of 20 epochs done") is not its length
    assert progress_label({"state": "queued", "budget_s": 12.0, "epochs": 20, "epoch": 0, "step": 0}) == \
        "0 epochs done; how many the budget holds is measured in its first steps"


def test_a_watched_run_changes_phase_when_its_job_ends_or_it_enters_or_leaves_the_queue():
    for before, now in [("running", "running"), ("starting", "stopping"), ("queued", "queued"),
                        ("finished", "failed"), ("stopped", "finished")]:
        assert not phase_changed(before, now), (before, now)
    for before, now in [("running", "finished"), ("stopping", "stopped"), ("running", "interrupted"),
                        ("queued", "starting"), ("queued", "unknown"), ("stopped", "queued")]:
        assert phase_changed(before, now), (before, now)
