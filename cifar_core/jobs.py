"""Training jobs: `python -m cifar_core train` started as its own process, outside any Streamlit script.

A Streamlit script is re-run on every click and stopped when the user navigates away, so model.fit cannot live in
it. The job runs in a new session (its own process group), outlives reruns, reloads and closed tabs, and is found
again through its run directory. One job trains per device (slots): on a CPU one at a time, since two would halve
each other's speed unseen; on a machine with N GPUs, N at once, each seeing only its own GPU (CUDA_VISIBLE_DEVICES).

The queue is the run directories themselves: Start while every slot is busy creates the run in state `queued`, with
its place (`queued_at`) in status.json, so the queue survives restarts and reloads. When a job ends, however it ends,
start_next starts the oldest queued run: the ending job's own process calls it (python -m cifar_core train), and so
does whoever notices a free slot and a queue (the Train and Runs pages while they poll, `runs`), so that a job killed
with SIGKILL does not stall the queue. Every start happens under start_lock, so two tabs pressing Start at once give
two runs in order, never two jobs in one slot.

A new process spends seconds importing TensorFlow before it can train. So the Train page calls warm_up, which keeps
one standby process waiting in the runs directory with TensorFlow imported, and Start hands that process the job
(or spawns a new one when there is none). The standby holds .standby.lock while it waits and lets go of it when it
takes a job, so a held lock always means a process ready for one; its side of that is standby.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import files, locks, resizing, runs, shapes
from . import spec as specs
from .config import TrainConfig, validate_config

STOP_GRACE_S = 15.0
MAX_SLOTS = 64  # CIFAR_CORE_SLOTS' largest
ORDINALS = {1: "st", 2: "nd", 3: "rd"}
RESUMABLE_STATES = ("stopped", "interrupted", "failed")


def active_job(runs_dir=None) -> dict | None:
    """The run whose job is alive (holds its lock), if any: the oldest of them when several slots train."""
    live = active_jobs(runs_dir)
    return live[-1] if live else None


def active_jobs(runs_dir=None) -> list[dict]:
    """The runs whose jobs are alive (or starting), newest first."""
    return [row for row in runs.list_runs(runs_dir) if row["state"] in runs.LIVE_STATES]


def shown_run(candidates, runs_dir=None) -> str | None:
    """The run the Train page shows: the first of `candidates` (run ids or None, most wanted first) that names a run
    with a status, else the run whose job trains now, else None."""
    for run_id in candidates:
        try:
            if run_id and (runs.run_path(run_id, runs_dir) / "status.json").exists():
                return run_id
        except runs.RunError:
            pass
    active = active_job(runs_dir)
    return active["run_id"] if active else None


# ---- devices: one job per slot

@functools.lru_cache(maxsize=1)
def gpu_ids() -> tuple[str, ...]:
    """The GPUs jobs may use, as CUDA_VISIBLE_DEVICES entries: the ones this server was given, else those nvidia-smi
    lists, else none. Asked of nvidia-smi, not TensorFlow, so that a page never imports it."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return tuple(v.strip() for v in visible.split(",") if v.strip() and v.strip() != "-1")
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(str(i) for i, line in enumerate(listing.stdout.splitlines()) if line.startswith("GPU "))


def slots() -> int:
    """How many jobs train at once: CIFAR_CORE_SLOTS if set (a whole number of at least 1), else one per GPU, else
    one on the CPU."""
    setting = os.environ.get("CIFAR_CORE_SLOTS", "").strip()
    if setting:  # ASCII digits only ("²" is a digit to str.isdigit, not to int), and a bound: slots are counted out
        if not (setting.isascii() and setting.isdigit()) or not 1 <= int(setting) <= MAX_SLOTS:
            raise runs.RunError(f"CIFAR_CORE_SLOTS must be a whole number from 1 to {MAX_SLOTS}, got {setting!r}.")
        return int(setting)
    return max(1, len(gpu_ids()))


def _free_slot(runs_dir) -> int | None:
    """The lowest slot no live job holds, or None when all are busy."""
    live = active_jobs(runs_dir)
    taken = {runs.read_status(runs.run_path(r["run_id"], runs_dir)).get("slot") for r in live}
    free = [n for n in range(slots()) if n not in taken]
    return free[0] if free and len(live) < slots() else None


def spawn(command: list[str], log_path: Path, gpu: str | None = None) -> int:
    """Starts `python -m cifar_core COMMAND` in a session (process group) of its own, so that it outlives the
    page's script runs and can be ended as a whole; returns its pid. gpu: the one GPU the job may see."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", "CIFAR_CORE_LAUNCHED": "1",
           **({} if gpu is None else {"CUDA_VISIBLE_DEVICES": gpu})}
    package_parent = str(Path(__file__).resolve().parent.parent)  # importable even when not installed
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    detach = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt" else {"start_new_session": True}
    with open(files.open_for_append(log_path), "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "cifar_core", *command], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, **detach)
    return process.pid


def _launch(run_dir: Path, extra: list[str], slot: int = 0) -> int:
    """Hands the job to the waiting standby if there is one (on a CPU: the standby's TensorFlow has already chosen
    its devices), else spawns its process; returns the job's pid. Called under the start lock, which a standby also
    takes before it gives up waiting."""
    root = run_dir.parent
    gpus = gpu_ids()
    runs.write_status(run_dir, slot=slot)
    pid = None if gpus else standby_pid(root)
    if pid:
        runs.write_json(root / ".standby.job.json", {"run_dir": str(run_dir.resolve()), "args": extra})
        return pid
    command = ["train", "--run-dir", str(run_dir.resolve()), *extra]
    return spawn(command, run_dir / "job.log", gpus[slot % len(gpus)] if gpus else None)


def standby_pid(runs_dir=None) -> int | None:
    """The pid of the standby process waiting in runs_dir, or None. The standby holds .standby.lock while it
    waits and writes its pid beside it."""
    root = Path(runs_dir or runs.default_runs_dir())
    if not locks.is_locked(root / ".standby.lock"):
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
        with start_lock(root):
            if standby_pid(root) or active_job(root):
                return
            spawn(["standby", "--runs-dir", str(root.resolve()), "--parent", str(os.getpid())],
                   root / ".standby.log")
    except OSError:
        pass  # a read-only or full runs folder: Start then spawns the job itself, as without a standby


@contextlib.contextmanager
def start_lock(runs_dir):
    """Serialises starts across sessions and processes: two quick presses of Start (or two browser tabs) cannot
    both see 'no job running' and both launch one."""
    root = Path(runs_dir or runs.default_runs_dir())
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = locks.wait_lock(root / ".start.lock")
    except OSError as e:
        raise runs.refusal(e, root, "no run can be started in it") from None
    try:
        yield
    finally:
        lock.release()


def _refuse_if_busy(runs_dir) -> None:
    if _free_slot(runs_dir) is None:
        busy = active_job(runs_dir)
        raise runs.RunError(f"The run {busy['name'] if busy else 'ahead'} is training; stop it or wait for it to "
                            "finish before resuming another (two jobs would share the CPU and both crawl).")


def start_job(model_spec: specs.ModelSpec, config: TrainConfig, runs_dir=None, name: str | None = None,
              **facts) -> str:
    """Validates, creates the run directory and starts its job, or queues the run when every slot is busy (or
    runs wait already: they go first); returns the run id. facts go into config.json (a sweep's trial, say).
    A bad spec, config or CIFAR_CORE_SLOTS (SpecError, RunError) is refused before anything is made."""
    shapes.validate(model_spec)
    validate_config(config)
    resizing.check(model_spec, config)
    slots()  # here: a --queue refused only after its run was made had left a run, which the next `runs` trained
    with start_lock(runs_dir):
        run_dir = runs.claim_run_dir(model_spec.name, runs_dir)
        try:
            runs.create_run(run_dir, model_spec, config, name=name, state="queued", **facts)
        except (specs.SpecError, OSError):
            files.remove_empty_dir(run_dir)
            raise
        run_id = run_dir.name
        runs.write_status(run_dir, queued_at=_next_place(runs_dir))
        _start_queued(runs_dir)
    return run_id


# ---- the queue

def _place(status: dict) -> float:
    value = status.get("queued_at")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("inf")


def queued_runs(runs_dir=None) -> list[dict]:
    """The queued runs, the next to start first (by their place, then by id): {run_id, queued_at}. Only status.json
    is read, so the pages may ask on every poll."""
    root = Path(runs_dir or runs.default_runs_dir())
    entries = []
    with contextlib.suppress(OSError):
        entries = [p for p in root.iterdir() if runs.RUN_ID.match(p.name) and p.is_dir()]
    statuses = {p.name: runs.read_status(p) for p in entries if (p / "status.json").exists()}
    rows = [{"run_id": name, "queued_at": _place(status)} for name, status in statuses.items()
            if status["state"] == "queued" and runs.config_problem(root / name) is None]
    return sorted(rows, key=lambda r: (r["queued_at"], r["run_id"]))


def _next_place(runs_dir) -> float:
    """A place behind every queued run: the time, or just after the last place when a clock went back."""
    last = max((r["queued_at"] for r in queued_runs(runs_dir)), default=0.0)
    return max(time.time(), last + 1e-3) if last != float("inf") else time.time()


def queue_position(run_id: str, runs_dir=None) -> int | None:
    """1 for the next run to start, 2 for the one behind it...; None when the run is not queued."""
    ids = [r["run_id"] for r in queued_runs(runs_dir)]
    return ids.index(run_id) + 1 if run_id in ids else None


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else ORDINALS.get(n % 10, 'th')}"


def queue_label(run_id: str, runs_dir=None) -> str:
    """'queued, 2nd' (the place in the queue), or the run's state."""
    position = queue_position(run_id, runs_dir)
    return f"queued, {ordinal(position)}" if position else runs.read_status(runs.run_path(run_id, runs_dir))["state"]


def _start_queued(runs_dir, offered=None) -> list[str]:
    """Under the start lock: starts the oldest queued runs while a slot is free; returns their ids. A run whose data
    source `offered` refuses fails with that sentence instead."""
    started = []
    while True:
        queue, slot = queued_runs(runs_dir), _free_slot(runs_dir)
        if not queue or slot is None:
            return started
        run_dir = runs.run_path(queue[0]["run_id"], runs_dir)
        try:
            runs.refuse_unoffered(run_dir, offered)
        except runs.RunError as e:
            runs.write_status(run_dir, state="failed", error=str(e))
            continue
        runs.write_status(run_dir, state="starting", error=None)
        try:
            runs.write_status(run_dir, pid=_launch(run_dir, [], slot))
        except OSError as e:
            runs.write_status(run_dir, state="failed", error=f"The job could not be started: {e}.")
        started.append(run_dir.name)


def start_next(runs_dir=None, offered=None) -> list[str]:
    """Starts the oldest queued runs while a slot is free (a job ended, or was killed); returns the ids started.
    Cheap when there is no queue, so pages may call it on every poll; they pass sources.offered (_start_queued)."""
    root = Path(runs_dir or runs.default_runs_dir())
    if not queued_runs(root):
        return []
    try:
        with start_lock(root):
            return _start_queued(root, offered)
    except (OSError, runs.RunError):
        return []  # a read-only or full runs folder: nothing can start from it


def cancel_queued(run_id: str, runs_dir=None) -> None:
    """Takes a queued run out of the queue: its folder holds nothing trained, so it is deleted."""
    run_dir = runs.run_path(run_id, runs_dir)
    with start_lock(runs_dir):
        if runs.read_status(run_dir).get("state") != "queued":
            raise runs.RunError(f"The run {runs.run_label(run_dir)} is no longer queued.")
        runs.delete_run(run_dir)


def move_up(run_id: str, runs_dir=None) -> None:
    """Swaps a queued run's place with the run ahead of it (nothing happens to the first)."""
    with start_lock(runs_dir):
        queue = [r["run_id"] for r in queued_runs(runs_dir)]
        if run_id not in queue:
            raise runs.RunError(f"The run {run_id} is no longer queued.")
        at = queue.index(run_id)
        if at == 0:
            return
        here, ahead = runs.run_path(run_id, runs_dir), runs.run_path(queue[at - 1], runs_dir)
        place_here, place_ahead = _place(runs.read_status(here)), _place(runs.read_status(ahead))
        runs.write_status(here, queued_at=place_ahead)
        runs.write_status(ahead, queued_at=place_here if place_here != place_ahead else place_here + 1e-3)


def retrain(run_dir: Path, source: str, runs_dir=None) -> str:
    """A run that failed on its data trained again as a new run, under its name: the same model and settings, on
    `source`. Returns the new run's id (start_job's)."""
    model_spec, config = runs.read_spec_and_config(run_dir)
    config = validate_config(dataclasses.replace(config, data=source))
    return start_job(model_spec, config, runs_dir, name=runs.run_label(run_dir))


def resume_job(run_id: str, runs_dir=None, offered=None) -> None:
    """Resumes a stopped, interrupted or failed run; a page passes sources.offered (runs.refuse_unoffered)."""
    run_dir = runs.run_path(run_id, runs_dir)
    with start_lock(runs_dir):
        _refuse_if_busy(runs_dir)
        slot = _free_slot(runs_dir)
        if runs.read_status(run_dir).get("state") not in RESUMABLE_STATES:
            raise runs.RunError("Only a stopped, interrupted or failed run can be resumed.")
        runs.refuse_unoffered(run_dir, offered)
        (run_dir / "stop").unlink(missing_ok=True)  # a stop request left by a killed job is not this resume's
        runs.write_status(run_dir, state="starting", error=None)
        runs.write_status(run_dir, pid=_launch(run_dir, ["--resume"], slot))


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
