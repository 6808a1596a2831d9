"""The run directory: the record of one training, written by its job and only read by everybody else.

    runs/<run_id>/config.json    spec, training config, data source, class names, versions
                  status.json    state, epoch, step, error, pid
                  metrics.jsonl  one record a line: kind (batch|epoch), epoch (1-based), step, time, Keras logs
                  model.keras    the latest good model
                  eval.json      evaluations, by split
                  label.json     the name the user gave the run
                  backup/        keras.callbacks.BackupAndRestore state
                  tensorboard/   `tensorboard --logdir runs`
                  lock           held (flock) by the job for its whole life
Every file is replaced atomically (temporary file + os.replace), so a crash leaves the previous version readable.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import re
import shutil
import time
from pathlib import Path

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")
STATES = ("starting", "running", "stopping", "stopped", "finished", "failed", "interrupted")
LIVE_STATES = ("starting", "running", "stopping")


class RunError(ValueError):
    """A run that cannot be opened or written; the message is a sentence for the user."""


class DiskFullError(OSError):
    """No space left on the device while writing a run's file; what was written before is kept. Still an OSError
    (errno ENOSPC), whose message is a sentence for the user rather than "[Errno 28] ..."."""

    def __init__(self, path):
        super().__init__(errno.ENOSPC, f"The disk is full: {Path(path).name} could not be written; what was saved "
                         "before is kept. Free some disk space, then resume the run.")

    def __str__(self):
        return self.strerror


def is_disk_full(error: BaseException | None) -> bool:
    """Whether an error, or one it was raised from (Keras wraps some), is a full disk or quota."""
    for _ in range(10):
        if error is None:
            return False
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__ or error.__context__
    return False


def default_runs_dir() -> Path:
    return Path(os.environ.get("CIFAR_RUNS_DIR") or "runs")


def new_run_id(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}"


def run_path(run_id: str, runs_dir: str | os.PathLike | None = None) -> Path:
    """The directory of a run identifier; only plain identifiers under the runs folder are accepted, never a path,
    URL or remote location."""
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise RunError(f"{run_id!r} is not a run identifier (letters, digits, '-' and '_' only).")
    return Path(runs_dir or default_runs_dir()) / run_id


def _clean(value):
    """NaN and infinities become null: JSON has no spelling for them, and charts show a gap there."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, data) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(_clean(data), f, indent=1, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if is_disk_full(e) and not isinstance(e, DiskFullError):
            raise DiskFullError(path) from e
        raise


def read_json(path: Path, default=None):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


def append_metrics(run_dir: Path, records: list[dict]) -> None:
    path = Path(run_dir) / "metrics.jsonl"
    text = "".join(json.dumps(_clean(r), allow_nan=False) + "\n" for r in records)
    try:
        with open(path, "a+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a torn last line from a crash: start the next record on its own line
                    text = "\n" + text
            f.write(text.encode())
    except OSError as e:  # a partly written line is a torn line: readers skip it, the next append starts anew
        if is_disk_full(e):
            raise DiskFullError(path) from e
        raise


def read_metrics(run_dir: Path) -> list[dict]:
    """Every complete record; a torn or garbled line is skipped."""
    records = []
    try:
        lines = (Path(run_dir) / "metrics.jsonl").read_text(errors="replace").splitlines()
    except OSError:
        return records
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def truncate_metrics(run_dir: Path, last_epoch: int) -> list[dict]:
    """Keeps only records of completed epochs up to last_epoch (used on resume, so no point is duplicated)."""
    kept = [r for r in read_metrics(run_dir) if r.get("epoch", 0) <= last_epoch]
    path = Path(run_dir) / "metrics.jsonl"
    tmp = path.with_name(".metrics.jsonl.tmp")
    try:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if is_disk_full(e):
            raise DiskFullError(path) from e
        raise
    return kept


class RunLock:
    """An exclusive flock on run_dir/lock, held by the one job that writes the run. The kernel drops it when the
    process dies, however it dies."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "lock"
        self._file = None

    def acquire(self) -> "RunLock":
        self._file = open(self.path, "a")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            self._file = None
            raise RunError(f"The run {self.path.parent.name} is in use by another job.") from None
        return self

    def release(self) -> None:
        if self._file:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def is_locked(run_dir: Path) -> bool:
    path = Path(run_dir) / "lock"
    if not path.exists():
        return False
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def write_status(run_dir: Path, **fields) -> dict:
    status = read_json(Path(run_dir) / "status.json", {}) or {}
    status.update(fields, updated=time.time())
    write_json(Path(run_dir) / "status.json", status)
    return status


def read_status(run_dir: Path) -> dict:
    """The job's status; a run that says it is live but whose job no longer holds the lock was killed, and
    reads as 'interrupted'."""
    status = read_json(Path(run_dir) / "status.json", {}) or {}
    if status.get("state") in LIVE_STATES and not is_locked(run_dir):
        if status.get("state") != "starting" or time.time() - status.get("updated", 0) > 60:
            status = {**status, "state": "interrupted"}
    return status


def request_stop(run_dir: Path) -> None:
    (Path(run_dir) / "stop").touch()


def stop_requested(run_dir: Path) -> bool:
    return (Path(run_dir) / "stop").exists()


def run_label(run_dir: Path) -> str:
    return (read_json(Path(run_dir) / "label.json", {}) or {}).get("label") or Path(run_dir).name


def rename_run(run_dir: Path, label: str) -> None:
    label = label.strip()
    if not 1 <= len(label) <= 80:
        raise RunError("A run name must be 1 to 80 characters.")
    write_json(Path(run_dir) / "label.json", {"label": label})


def delete_run(run_dir: Path) -> None:
    if read_status(run_dir).get("state") in LIVE_STATES:
        raise RunError(f"The run {Path(run_dir).name} is still training; stop it before deleting it.")
    shutil.rmtree(run_dir)


def summarize(run_dir: Path) -> dict:
    """One row of the Runs table."""
    config = read_json(run_dir / "config.json", {}) or {}
    status = read_status(run_dir)
    epochs = [r for r in read_metrics(run_dir) if r.get("kind") == "epoch"]
    val = [r["val_accuracy"] for r in epochs if r.get("val_accuracy") is not None]
    return {
        "run_id": run_dir.name,
        "name": run_label(run_dir),
        "model": config.get("spec", {}).get("name", "?"),
        "params": config.get("params"),
        "epochs_done": len(epochs),
        "epochs": config.get("train", {}).get("epochs"),
        "best_val_accuracy": max(val) if val else None,
        "train_time_s": epochs[-1]["time"] if epochs else None,
        "state": status.get("state", "unknown"),
        "has_model": (run_dir / "model.keras").exists(),
        "created": config.get("created"),
    }


def list_runs(runs_dir: str | os.PathLike | None = None) -> list[dict]:
    root = Path(runs_dir or default_runs_dir())
    if not root.is_dir():
        return []
    rows = [summarize(p) for p in root.iterdir()
            if p.is_dir() and RUN_ID.match(p.name) and (p / "config.json").exists()]
    return sorted(rows, key=lambda r: r["run_id"], reverse=True)


DEFAULT_RUN = Path(__file__).parent / "assets" / "default"


def resolve_model(ref: str, runs_dir: str | os.PathLike | None = None, *, allow_paths: bool = True
                  ) -> tuple[Path, Path | None]:
    """(model.keras path, run directory or None) for 'default', a run identifier under the runs folder, or (from
    the command line only) a local run directory or .keras file. Remote locations are refused: Keras would fetch
    hf:// or gs:// addresses."""
    ref = str(ref)
    if ref == "default":
        return DEFAULT_RUN / "model.keras", DEFAULT_RUN
    if "://" in ref or "\0" in ref:
        raise RunError(f"{ref!r} is not a local model; give a run identifier, a run directory or a .keras file.")
    if RUN_ID.match(ref) and (run_path(ref, runs_dir) / "model.keras").exists():
        return run_path(ref, runs_dir) / "model.keras", run_path(ref, runs_dir)
    if not allow_paths:
        raise RunError(f"{ref!r} is not a run with a trained model.")
    path = Path(ref)
    if path.is_dir() and (path / "model.keras").exists():
        return path / "model.keras", path
    if path.suffix == ".keras" and path.is_file():
        return path, None
    raise RunError(f"No model at {ref!r}; give 'default', a run identifier, a run directory or a .keras file.")


def tta_for(run_dir: Path | None) -> bool:
    """Whether a run's model is meant to be used with test-time flip averaging (its TrainConfig.tta)."""
    config = (read_json(run_dir / "config.json", {}) or {}) if run_dir else {}
    return bool((config.get("train") or {}).get("tta", False))


def class_names_for(run_dir: Path | None, num_classes: int) -> tuple:
    """The class names a model was trained with (from its run's config), else CIFAR-10's for 10 classes."""
    names = (read_json(run_dir / "config.json", {}) or {}).get("class_names") if run_dir else None
    if names and len(names) == num_classes:
        return tuple(names)
    from .data import CIFAR10_CLASSES

    return CIFAR10_CLASSES if num_classes == 10 else tuple(f"class {i}" for i in range(num_classes))
