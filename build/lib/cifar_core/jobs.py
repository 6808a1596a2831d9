"""Training jobs: `python -m cifar_core train` started as its own process, outside any Streamlit script.

A Streamlit script is re-run on every click and stopped when the user navigates away, so model.fit cannot live in
it. The job runs in a new session (its own process group), outlives reruns, reloads and closed tabs, and is found
again through its run directory. One job trains at a time: two would halve each other's speed unseen.

A new process spends seconds importing TensorFlow before it can train. So the Train page calls warm_up, which keeps
one standby process waiting in the runs directory with TensorFlow imported, and Start hands that process the job
(or spawns a new one when there is none). The standby holds .standby.lock while it waits and lets go of it when it
takes a job, so a held lock always means a process ready for one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import files, runs
from . import spec as specs
from .config import TrainConfig, validate_config

STOP_GRACE_S = 15.0
STANDBY_IDLE_S = float(os.environ.get("CIFAR_CORE_STANDBY_IDLE_S") or 600)  # a standby unused this long exits
STANDBY_POLL_S = 0.05


def active_job(runs_dir=None) -> dict | None:
    """The run whose job is alive (holds its lock), if any."""
    for row in runs.list_runs(runs_dir):
        if row["state"] in runs.LIVE_STATES:
            return row
    return None


def _spawn(command: list[str], log_path: Path) -> int:
    """Starts `python -m cifar_core COMMAND` in a session (process group) of its own, so that it outlives the
    page's script runs and can be ended as a whole; returns its pid."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", "CIFAR_CORE_LAUNCHED": "1"}
    package_parent = str(Path(__file__).resolve().parent.parent)  # importable even when not installed
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    detach = ({"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt"
              else {"start_new_session": True})
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "cifar_core", *command], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, **detach)
    return process.pid


def _launch(run_dir: Path, extra: list[str]) -> int:
    """Hands the job to the waiting standby if there is one, else spawns its process; returns the job's pid.
    Called under the start lock, which a standby also takes before it gives up waiting."""
    root = run_dir.parent
    pid = standby_pid(root)
    if pid:
        runs.write_json(root / ".standby.job.json", {"run_dir": str(run_dir.resolve()), "args": extra})
        return pid
    return _spawn(["train", "--run-dir", str(run_dir.resolve()), *extra], run_dir / "job.log")


def standby_pid(runs_dir=None) -> int | None:
    """The pid of the standby process waiting in runs_dir, or None. The standby holds .standby.lock while it
    waits and writes its pid beside it."""
    root = Path(runs_dir or runs.default_runs_dir())
    if not files.is_locked(root / ".standby.lock"):
        return None
    pid = files.read_json(root / ".standby.pid.json", {})
    return pid.get("pid") if isinstance(pid, dict) and isinstance(pid.get("pid"), int) else None


def warm_up(runs_dir=None) -> None:
    """Starts a standby process for runs_dir unless one is waiting or a job is training. CIFAR_CORE_STANDBY=0
    turns this off (the page tests do)."""
    if os.environ.get("CIFAR_CORE_STANDBY", "1") == "0":
        return
    root = Path(runs_dir or runs.default_runs_dir())
    try:
        with _start_lock(root):
            if standby_pid(root) or active_job(root):
                return
            _spawn(["standby", "--runs-dir", str(root.resolve()), "--parent", str(os.getpid())],
                   root / ".standby.log")
    except OSError:
        pass  # a read-only or full runs folder: Start then spawns the job itself, as without a standby


def _parent_alive(parent: int | None) -> bool:
    if not parent:
        return True
    if os.name != "nt":
        return os.getppid() == parent  # reparented (to init) once the server that started it is gone
    try:
        os.kill(parent, 0)
    except OSError:
        return False
    return True


def run_standby(runs_dir, parent: int | None = None) -> list[str] | None:
    """The standby process's life: take .standby.lock (or return None at once if another process holds it),
    import TensorFlow and run one operation, then wait for a job. Returns that job's train arguments, with the lock
    given up; returns None after STANDBY_IDLE_S without one, when the runs directory is gone, or when the server
    that started it (parent) has ended."""
    root = Path(runs_dir)
    lock = files.try_lock(root / ".standby.lock")
    if lock is None:
        return None
    runs.write_json(root / ".standby.pid.json", {"pid": os.getpid()})
    import keras  # noqa: F401
    import tensorflow as tf

    from . import train  # noqa: F401

    tf.nn.conv2d(tf.zeros([1, 4, 4, 3]), tf.zeros([3, 3, 3, 8]), 1, "SAME")  # oneDNN's first-call set-up
    print(f"standby {os.getpid()} ready", flush=True)
    job_file, deadline = root / ".standby.job.json", time.monotonic() + STANDBY_IDLE_S
    try:
        while root.is_dir() and _parent_alive(parent):
            if job_file.exists() or time.monotonic() > deadline:
                with _start_lock(root):  # a start under way finishes handing its job over first
                    job = runs.read_json(job_file)
                    job_file.unlink(missing_ok=True)
                if isinstance(job, dict) and isinstance(job.get("run_dir"), str) and isinstance(job.get("args"), list) \
                        and Path(job["run_dir"]).resolve().parent == root.resolve():  # only a run of this folder
                    return ["train", "--run-dir", job["run_dir"], *map(str, job["args"])]
                if time.monotonic() > deadline:
                    return None
            time.sleep(STANDBY_POLL_S)
        return None
    finally:
        lock.release()


@contextlib.contextmanager
def _start_lock(runs_dir):
    """Serialises starts across sessions and processes: two quick presses of Start (or two browser tabs) cannot
    both see 'no job running' and both launch one."""
    root = Path(runs_dir or runs.default_runs_dir())
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = files.wait_lock(root / ".start.lock")
    except OSError as e:
        raise runs.refusal(e, root, "no run can be started in it") from None
    try:
        yield
    finally:
        lock.release()


def _refuse_if_busy(runs_dir) -> None:
    busy = active_job(runs_dir)
    if busy:
        raise runs.RunError(f"The run {busy['name']} is training; stop it or wait for it to finish before "
                            "starting another (two jobs would share the CPU and both crawl).")


def start_job(model_spec: specs.ModelSpec, config: TrainConfig, runs_dir=None, name: str | None = None) -> str:
    """Validates, creates the run directory and starts the job; returns the run id. Raises SpecError for a bad
    spec or config (nothing is created) and RunError if another job is training."""
    specs.validate(model_spec)
    validate_config(config)
    with _start_lock(runs_dir):
        _refuse_if_busy(runs_dir)
        run_id = runs.new_run_id(model_spec.name)
        while runs.run_path(run_id, runs_dir).exists():  # two starts in the same second
            time.sleep(1.0)
            run_id = runs.new_run_id(model_spec.name)
        run_dir = runs.create_run(runs.run_path(run_id, runs_dir), model_spec, config, name=name)
        runs.write_status(run_dir, pid=_launch(run_dir, []))
    return run_id


def resume_job(run_id: str, runs_dir=None) -> None:
    run_dir = runs.run_path(run_id, runs_dir)
    with _start_lock(runs_dir):
        _refuse_if_busy(runs_dir)
        if runs.read_status(run_dir).get("state") not in ("stopped", "interrupted", "failed"):
            raise runs.RunError("Only a stopped, interrupted or failed run can be resumed.")
        (run_dir / "stop").unlink(missing_ok=True)  # a stop request left by a killed job is not this resume's
        runs.write_status(run_dir, state="starting", error=None)
        runs.write_status(run_dir, pid=_launch(run_dir, ["--resume"]))


def end_process_group(pid: int) -> None:
    """Ends a job and everything it started: its process group on POSIX (SIGTERM, then SIGKILL), its process tree on
    Windows (taskkill /T /F)."""
    if os.name == "nt":
        subprocess.run(["taskkill", "/PID", str(pid), "/T", "/F"], capture_output=True, check=False)
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(2.0)


def stop_job(run_id: str, runs_dir=None, wait_s: float = STOP_GRACE_S) -> str:
    """Asks the job to stop between batches (it then saves its model); if it has not ended after wait_s, ends its
    whole process group. Returns the final state."""
    run_dir = runs.run_path(run_id, runs_dir)
    runs.request_stop(run_dir)
    pid = runs.read_status(run_dir).get("pid")
    deadline = time.time() + wait_s
    while time.time() < deadline and (runs.is_locked(run_dir) or runs.read_status(run_dir)["state"] == "starting"):
        time.sleep(0.2)
    if runs.is_locked(run_dir) and pid:
        end_process_group(pid)
    return runs.read_status(run_dir).get("state", "unknown")


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
        fraction = min(1.0, elapsed / budget)
    remaining = elapsed * (1 - fraction) / fraction if fraction > 0 and elapsed > 0 else None
    return {"fraction": fraction, "elapsed_s": elapsed, "remaining_s": remaining}


def read_job_log(run_id: str, runs_dir=None, lines: int = 20) -> str:
    try:
        text = (runs.run_path(run_id, runs_dir) / "job.log").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])

