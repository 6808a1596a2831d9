"""What the Train page shows of a job from its status.json alone: how far it is, how long is left, the progress
bar's words, and when the page must redraw. No process and no queue is touched here (those are jobs.py's)."""

from __future__ import annotations

from . import metrics, runs

WATCHED_STATES = (*runs.LIVE_STATES, "queued")  # a run whose page polls it: its job trains, or waits for a slot


def job_progress(status: dict) -> dict:
    """From a status.json: fraction of the training done (0..1), seconds elapsed, and the seconds remaining
    extrapolated from the pace so far (None until some progress is measured)."""
    epochs, steps = status.get("epochs") or 0, status.get("steps_per_epoch") or 0
    epoch, step = status.get("epoch") or 0, status.get("step") or 0
    # During an epoch, `epoch` is the 1-based epoch under way and `step` its last batch; at step 0 (just started
    # or resumed) `epoch` counts the completed epochs.
    done = epoch - 1 + min(step, steps) / steps if steps and step else epoch
    fraction = min(1.0, max(0.0, done / epochs)) if epochs else 0.0
    elapsed = float(status.get("time") or 0.0)
    budget = status.get("budget_s")
    if isinstance(budget, (int, float)) and budget > 0:  # a time budget: the clock is the progress
        fraction = min(1.0, max(0.0, elapsed / budget))
    if status.get("state") == "finished":  # a budget ends a little early, and may end within an epoch
        fraction = 1.0
    remaining = elapsed * (1 - fraction) / fraction if fraction > 0 and elapsed > 0 else None
    # The pace from this fit's first step (pace_from: its time and epochs done): the imports and tracing before it
    # are no pace, and at step 1 of a 2-epoch run of 6 s the page had said 3 min 23 s were left.
    pace = status.get("pace_from")
    start, then = [metrics.number(v) for v in pace] if isinstance(pace, list) and len(pace) == 2 else (None, None)
    if remaining and not budget and epochs and None not in (start, then) and 0 <= start <= elapsed:
        gained = fraction - then / epochs
        remaining = (elapsed - start) * (1 - fraction) / gained if gained > 0 else None
    return {"fraction": fraction, "elapsed_s": elapsed, "remaining_s": remaining}


def progress_label(status: dict) -> str:
    """The progress bar's text: 'epoch 2/4, step 5/10' during an epoch, else '2 of 4 epochs done'. Under a time
    budget the number of epochs is the job's estimate, which its measured pace moves: 'epoch 2 of about 4'; a
    finished budget run counts what it trained, and says so when the budget ended within an epoch."""
    epoch, step, steps = status.get("epoch", 0), status.get("step", 0), status.get("steps_per_epoch")
    budget, finished = status.get("budget_s"), status.get("state") == "finished"
    if finished and budget:
        return f"time budget spent in epoch {epoch}, at step {step} of {steps}" if steps and 0 < step < steps \
            else f"time budget spent after {epoch} epochs"
    if budget and not steps:  # its first steps will say how many epochs it holds (not the Epochs box, 20 had read)
        return f"{epoch} epochs done; how many the budget holds is measured in its first steps"
    epochs, about = status.get("epochs", "?"), "about " if budget else ""
    if steps and step:
        return f"epoch {epoch} of {about}{epochs}, step {step}/{steps}" if budget else \
            f"epoch {epoch}/{epochs}, step {step}/{steps}"
    return f"{epoch} of {about}{epochs} epochs done"


def phase_changed(before: str | None, now: str | None) -> bool:
    """Whether a run watched since it was in state `before` has, in state `now`, ended its job (trained or queued
    before, neither now) or gone into or out of the queue: what its page shows changes beyond the watched part."""
    return before in WATCHED_STATES and now not in WATCHED_STATES or (now == "queued") != (before == "queued")
