"""The standby process: a `python -m cifar_core standby` that imports TensorFlow, runs one operation and then waits,
so that Start hands it a job instead of paying seconds of imports before the first step (jobs.warm_up starts it,
jobs.start_job hands it the job through .standby.job.json).

Apart from jobs.py because it is the one piece that runs inside the waiting process, not in the page or the CLI.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from . import files, jobs, locks, runs


def _idle_seconds(setting: str | None, default: float = 600.0) -> float:
    """CIFAR_CORE_STANDBY_IDLE_S as seconds from 1 to a day; the default for anything else ("abc" had failed the
    standby's import, "nan" had kept it for ever)."""
    try:
        seconds = float(setting or default)
    except ValueError:
        return default
    return seconds if 1 <= seconds <= 86_400 else default


STANDBY_IDLE_S = _idle_seconds(os.environ.get("CIFAR_CORE_STANDBY_IDLE_S"))  # a standby unused this long exits
STANDBY_POLL_S = 0.05


def _parent_alive(parent: int | None) -> bool:
    if not parent:
        return True
    if os.name != "nt":
        return os.getppid() == parent  # reparented (to init) once the server that started it is gone
    return locks.process_alive(parent)


def run_standby(runs_dir, parent: int | None = None) -> list[str] | None:
    """The standby process's life: take .standby.lock (or return None at once if another process holds it),
    import TensorFlow and run one operation, then wait for a job. Returns that job's train arguments, with the lock
    given up; returns None after STANDBY_IDLE_S without one, when the runs directory is gone, or when the server
    that started it (parent) has ended."""
    root = Path(runs_dir)
    try:  # only in a runs folder that is there: filelock had made a mistyped one's whole tree, or used '.' for ''
        lock = locks.try_lock(root / ".standby.lock") if str(runs_dir).strip() and root.is_dir() else None
    except OSError:  # a runs folder it cannot write: no standby, and Start spawns its job as before
        lock = None
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
                with jobs.start_lock(root):  # a start under way finishes handing its job over first
                    job = runs.read_json(job_file)
                    job_file.unlink(missing_ok=True)
                if isinstance(job, dict) and isinstance(job.get("run_dir"), str) and isinstance(job.get("args"), list) \
                        and files.resolved(job["run_dir"]).parent == files.resolved(root):  # only a run of this folder
                    return ["train", "--run-dir", job["run_dir"], *map(str, job["args"])]
                if time.monotonic() > deadline:
                    return None
            time.sleep(STANDBY_POLL_S)
        return None
    finally:
        lock.release()
