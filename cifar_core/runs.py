"""The run directory: the record of one training, written by its job and only read by everybody else.

    runs/<run_id>/config.json    spec, training config, then what the job found: data source, class names, device
                  status.json    state, epoch, step, error, pid
                  metrics.jsonl  one record a line: kind (batch|epoch), epoch (1-based), step, time, Keras logs
                  model.keras    the latest good model
                  eval.json      evaluations, by data source and split
                  label.json     the name the user gave the run
                  backup/        keras.callbacks.BackupAndRestore state
                  tensorboard/   `tensorboard --logdir runs`
                  lock           held by the job for its whole life (locks.try_lock)

Every file is replaced atomically (files.write_atomic). Every reader here is defensive: any file may be missing,
torn, of the wrong shape or hostile, and a run with such a file is listed with the reason instead of breaking the
page or the command that lists it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import time
from pathlib import Path

from . import config as configs
from . import files, locks, metrics, shapes, spec_io
from . import spec as specs
from .files import DiskFullError, is_disk_full, is_text, read_json, read_tail, shown, touch, write_json  # noqa: F401

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")
STATES = ("queued", "starting", "running", "stopping", "stopped", "finished", "failed", "interrupted")
LIVE_STATES = ("starting", "running", "stopping")
# What a run holds before its job has trained anything: such a folder may be handed to `train --run-dir`.
# A stop file is one too: Stop pressed before the job began, which the job honours at its start.
# status.json and label.json hold a few hundred bytes; read for every run on every Runs and Train page, 4 MB ones
# (the limit of other JSON) had taken seconds each
MAX_STATUS_BYTES = 64 * 2**10
FRESH_FILES = {"config.json", "status.json", "label.json", "job.log", "lock", "stop"}


class RunError(ValueError):
    """A run that cannot be opened or written; the message is a sentence for the user."""


def refusal(error: OSError, folder: str | os.PathLike, what: str) -> OSError | RunError:
    """A file-system error while changing a run or the runs folder, as the sentence for the user: DiskFullError
    for a full disk, else a RunError naming the folder, whether it is read-only, and what could not be done."""
    if isinstance(error, DiskFullError):
        return error
    if is_disk_full(error):
        return DiskFullError(getattr(error, "filename", None) or folder)
    name = Path(folder).name or str(folder)
    if error.errno == errno.ENOENT:  # deleted in another session meanwhile: no fault of the folder's
        return RunError(f"{what[:1].upper()}{what[1:]}: it is no longer there (deleted or moved meanwhile).")
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return RunError(f"The folder {name} is read-only; {what}.")
    return RunError(f"The folder {name} cannot be changed ({error.strerror or type(error).__name__}); {what}.")


def default_runs_dir() -> Path:
    return Path(os.environ.get("CIFAR_RUNS_DIR") or "runs")


def new_run_id(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")[:40] or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}"


def claim_run_dir(name: str, runs_dir: str | os.PathLike | None = None) -> Path:
    """A new, empty folder for a run of this model, made here and so this caller's alone: two runs started in the
    same second (a sweep, a queue filled at once, two terminals) get -2, -3, ... instead of one folder."""
    runs_dir = Path(runs_dir or default_runs_dir())
    first = new_run_id(name)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10_000):
            run_dir = run_path(first if n == 1 else f"{first}-{n}", runs_dir)
            try:
                run_dir.mkdir()
                return run_dir
            except FileExistsError:
                continue
    except OSError as e:
        raise refusal(e, runs_dir, "no run can be created in it") from None
    raise RunError(f"The runs folder {runs_dir} already holds 9,999 runs named {first}; try again in a second.")


def run_path(run_id: str, runs_dir: str | os.PathLike | None = None) -> Path:
    """The directory of a run identifier; only plain identifiers under the runs folder are accepted, never a path,
    URL or remote location."""
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise RunError(f"{run_id!r} is not a run identifier (letters, digits, '-' and '_' only).")
    return Path(runs_dir or default_runs_dir()) / run_id


# ---- creating a run

def is_fresh(run_dir: Path) -> bool:
    """Whether run_dir is a run created for a job that has not started training: only the files create_run writes,
    in state queued or starting. Anything else in an existing folder belongs to somebody."""
    try:
        names = set(os.listdir(run_dir))
    except OSError:
        return False
    return names <= FRESH_FILES and "config.json" in names and \
        read_status(run_dir, raw=True).get("state") in ("queued", "starting")


def check_new_run_dir(run_dir: Path) -> None:
    """Refuses an existing folder that holds anything, unless it is a fresh run: training into it would overwrite or
    delete what is there."""
    run_dir = Path(run_dir)
    if run_dir.is_symlink() or (run_dir.exists() and not run_dir.is_dir()):
        raise RunError(f"{run_dir} is not a folder; give a new folder for the run, or resume a run with --resume.")
    if run_dir.is_dir() and any(True for _ in os.scandir(run_dir)) and not is_fresh(run_dir):
        raise RunError(f"The folder {run_dir} already holds files; nothing in it was touched. Continue a run there "
                       "with --resume, or give a new folder.")


def create_run(run_dir: Path, model_spec: specs.ModelSpec, config: configs.TrainConfig, *, name: str | None = None,
               state: str = "starting", **facts) -> Path:
    """Creates the run directory (refusing a folder that holds anything) and writes its config.json, its status and
    its name: the one place a run comes into being, for the CLI and the pages alike."""
    shapes.validate(model_spec)
    configs.validate_config(config)
    run_dir = Path(run_dir)
    check_new_run_dir(run_dir)
    if name:
        check_run_name(name)  # before anything exists: a refused name leaves no half-made run
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        try:  # config.json made exclusively: of two jobs creating this run at once, the second is refused here
            os.close(os.open(run_dir / "config.json", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            raise RunError(f"The folder {run_dir} was just taken by another run; nothing in it was touched. Give "
                           "a new folder.") from None
        write_config(run_dir, spec=spec_io.to_dict(model_spec), train=configs.to_dict(config),
                     params=shapes.summary(model_spec)["params"], created=time.strftime("%Y-%m-%d %H:%M:%S"),
                     **facts)
        if name:
            rename_run(run_dir, name)
        write_status(run_dir, state=state, epoch=0, epochs=config.epochs, step=0, budget_s=(config.minutes or 0) * 60)
    except OSError as e:
        raise refusal(e, run_dir.parent, "no run can be created in it") from None
    return run_dir


def write_config(run_dir: Path, **fields) -> dict:
    """Merges fields into config.json (the only writer of that file): create_run writes the spec and the settings,
    the job adds what it found (data source, class names, device)."""
    config = {**read_config(run_dir), **fields}
    write_json(Path(run_dir) / "config.json", config)
    return config


# ---- defensive readers

def read_config(run_dir: Path) -> dict:
    """config.json as a dict ({} when missing or unreadable); its parts are checked by config_problem."""
    data = read_json(Path(run_dir) / "config.json", {})
    return data if isinstance(data, dict) else {}


def config_problem(run_dir: Path) -> str | None:
    """Why the run's config.json cannot be read, as a sentence, or None. Its shape is checked here; whether its spec
    and settings can be trained again is read_spec_and_config's question."""
    path = Path(run_dir) / "config.json"
    raw = read_json(path, None)
    if raw is None:
        return ("its config.json is a link, which is not followed." if os.path.islink(path) else
                "its config.json is not valid JSON." if os.path.lexists(path) else "it has no config.json.")
    if not isinstance(raw, dict):
        return "its config.json is not a JSON object."
    for key in ("spec", "train"):
        if not isinstance(raw.get(key), dict):
            return f"its config.json has no {key} object."
    if not isinstance(raw.get("class_names", []), list):
        return "its config.json's class_names is not a list."
    return None


def read_spec_and_config(run_dir: Path) -> tuple[specs.ModelSpec, configs.TrainConfig]:
    """The run's model spec and training settings, checked; RunError with the reason otherwise."""
    problem = config_problem(run_dir)
    raw = read_config(run_dir)
    try:
        if not problem:
            return spec_io.from_dict(raw["spec"]), configs.config_from_dict(raw["train"])
    except specs.SpecError as e:
        problem = f"its config.json is not usable: {e}"
    raise RunError(f"The run {Path(run_dir).name} cannot be used: {problem}")


def check_record(run_dir: Path, model_spec: specs.ModelSpec, config: configs.TrainConfig) -> None:
    """RunError unless the run's config.json records this spec and these settings: a job that found a fresh run
    made by another (two started at once in one folder) would otherwise train a model its record does not describe."""
    raw = read_config(run_dir)
    if raw.get("spec") != spec_io.to_dict(model_spec) or raw.get("train") != configs.to_dict(config):
        raise RunError(f"The run {Path(run_dir).name} was made by another job for another model or other settings; "
                       "nothing in it was touched. Give a new folder.")


# ---- the job's lock, status and stop request

class RunLock:
    """The lock on run_dir/lock, held by the one job that writes the run; freed by the kernel when the process
    dies, however it dies."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "lock"
        self._lock = None

    def acquire(self) -> RunLock:
        try:
            self._lock = locks.try_lock(self.path)
        except OSError as e:
            raise RunError(f"The run {self.path.parent.name} cannot be trained: its lock file cannot be opened "
                           f"({e.strerror or type(e).__name__}).") from None
        if self._lock is None:
            raise RunError(f"The run {self.path.parent.name} is in use by another job.")
        return self

    def release(self) -> None:
        if self._lock:
            self._lock.release()
            self._lock = None


def is_locked(run_dir: Path) -> bool:
    return locks.is_locked(Path(run_dir) / "lock")


def write_status(run_dir: Path, **fields) -> dict:
    status = read_status(run_dir, raw=True)
    status.update(fields, updated=time.time())
    write_json(Path(run_dir) / "status.json", status)
    return status


def read_status(run_dir: Path, raw: bool = False) -> dict:
    """The job's status, its fields checked. A run that says it is live but whose job no longer holds the lock was
    killed (or died in native code) and reads as 'interrupted'. raw: the file as written, for the job itself."""
    status = read_json(Path(run_dir) / "status.json", {}, max_bytes=MAX_STATUS_BYTES)
    status = status if isinstance(status, dict) else {}
    if raw:
        return status
    clean = {k: v for k, v in status.items() if isinstance(k, str)}
    clean["state"] = status.get("state") if status.get("state") in STATES else "unknown"
    clean["updated"] = metrics.number(status.get("updated")) or 0.0
    for key in ("epoch", "epochs", "step", "steps_per_epoch"):
        clean[key] = metrics.count(status.get(key))
    clean["time"] = metrics.in_range("time", metrics.number(status.get("time"))) or 0.0
    clean["pid"] = metrics.count(status.get("pid")) or None
    slot = status.get("slot")  # any JSON value there (a list) had failed the queue
    clean["slot"] = slot if metrics.count(slot) or slot == 0 and not isinstance(slot, bool) else None
    clean["error"] = str(status["error"])[:1000] if status.get("error") is not None else None
    if clean["state"] in LIVE_STATES and not is_locked(run_dir):
        # a start more than a minute old, or in the future (a clock set ahead, an edited file: "updated" 1e12 had
        # held the only slot for ever), is no start under way
        if clean["state"] != "starting" or abs(time.time() - clean["updated"]) > 60:
            clean["state"] = "interrupted"
    return clean


def request_stop(run_dir: Path) -> None:
    touch(Path(run_dir) / "stop")


def stop_requested(run_dir: Path) -> bool:
    return (Path(run_dir) / "stop").exists()


# ---- names, listing, deletion

def run_label(run_dir: Path) -> str:
    label = (read_json(Path(run_dir) / "label.json", {}, max_bytes=MAX_STATUS_BYTES) or {})
    label = label.get("label") if isinstance(label, dict) else None
    return label[:80] if isinstance(label, str) and label.strip() else Path(run_dir).name


def check_run_name(label) -> str:
    """The display name, stripped; RunError when it is empty, longer than 80 characters, or not UTF-8 text."""
    label = str(label).strip()
    if not 1 <= len(label) <= 80:
        raise RunError(f"A run name must be 1 to 80 characters; the one given has {len(label):,}.")
    if not is_text(label):  # `--name café` typed in a Latin-1 terminal
        raise RunError(f"The run name {shown(label)} is not UTF-8 text; type it again in a UTF-8 terminal.")
    return label


def rename_run(run_dir: Path, label: str) -> None:
    label = check_run_name(label)
    try:
        write_json(Path(run_dir) / "label.json", {"label": label})
    except OSError as e:
        raise refusal(e, run_dir, "the run cannot be renamed") from None


def delete_run(run_dir: Path) -> None:
    run_dir = Path(run_dir)
    if read_status(run_dir).get("state") in LIVE_STATES:
        raise RunError(f"The run {run_dir.name} is still training; stop it before deleting it.")
    try:
        if run_dir.is_symlink():  # the link is the run's entry here; what it points to is somebody else's
            run_dir.unlink()
        else:
            try:
                shutil.rmtree(run_dir)
            except RecursionError:  # Python 3.11's rmtree recurses: a run holding 1,500 nested folders
                files.remove_tree(run_dir)
    except OSError as e:
        raise refusal(e, run_dir.parent, f"the run {run_dir.name} could not be deleted") from None


def summarize(run_dir: Path) -> dict:
    """One row of the Runs table; `problem` says why the run cannot be used (its other fields are then partial)."""
    run_dir = Path(run_dir)
    config, problem = read_config(run_dir), config_problem(run_dir)
    status = read_status(run_dir)
    unreadable = problem or _status_problem(run_dir, status)
    epochs = metrics.epoch_records(run_dir)
    val = [r["val_accuracy"] for r in epochs if r.get("val_accuracy") is not None]
    spec = config.get("spec") if isinstance(config.get("spec"), dict) else {}
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    name, minutes = spec.get("name"), metrics.number(train.get("minutes"))
    minutes = minutes if minutes is not None and minutes > 0 else None  # a time budget, in place of epochs
    return {
        "run_id": run_dir.name,
        "name": run_label(run_dir),
        "model": name if isinstance(name, str) else "?",
        "params": metrics.count(config.get("params")) or None,
        "epochs_done": len(epochs),
        "epochs": (status["epochs"] if minutes else metrics.count(train.get("epochs"))) or None,  # a budget's: planned
        "minutes": minutes,
        "best_val_accuracy": max(val) if val else None,
        "last_val_accuracy": epochs[-1].get("val_accuracy") if epochs else None,  # the saved model's
        "train_time_s": epochs[-1]["time"] if epochs else None,
        "state": status["state"] if not problem else "unreadable",
        "has_model": files.is_regular(run_dir / "model.keras") and not problem,
        "created": config.get("created") if isinstance(config.get("created"), str) else None,
        "problem": unreadable,
        "error": status["error"] if status["state"] == "failed" else None,  # what the failed job ended on
    }


def _status_problem(run_dir: Path, status: dict) -> str | None:
    """Why status.json or metrics.jsonl cannot be read, as a sentence, or None (a run not started has neither)."""
    if (run_dir / "status.json").is_symlink() or (run_dir / "status.json").exists() and status["state"] == "unknown":
        return "its status.json is not readable, or names no state it can be in."
    return metrics.file_problem(run_dir)


def list_runs(runs_dir: str | os.PathLike | None = None) -> list[dict]:
    """Every run folder under runs_dir, newest first, the unreadable ones included with their problem."""
    root = Path(runs_dir or default_runs_dir())
    try:
        names = sorted(root.iterdir(), key=lambda p: (p.is_symlink(), p.name))  # a run once: folders, then links
    except OSError:
        return []
    found = {}  # each run folder by its first entry
    for p in names:
        with contextlib.suppress(OSError, RuntimeError):  # a link into a folder nobody may read: the others list
            if RUN_ID.match(p.name) and p.is_dir():
                found.setdefault(p.resolve(), p)
    # lexists: a run whose config.json is a broken link is listed with that reason, not left out
    rows = [summarize(p) for p in found.values() if any(os.path.lexists(p / f) for f in ("config.json", "status.json"))]
    return sorted(rows, key=lambda r: r["run_id"], reverse=True)


def table_rows(rows: list[dict]) -> list[dict]:
    """list_runs' rows as the Runs page's table shows them: its column names, epochs as "done/planned" (or "done in
    M min" for a time budget, whose epochs are whatever the minutes held, "done of M min" for one not yet over: a run
    stopped after 9 s had read "12 in 0.5 min"), the best epoch's validation accuracy and the last one's."""
    return [{"name": r["name"], "model": r["model"], "params": r["params"],
             "epochs": f"{r['epochs_done']} {'in' if r['state'] == 'finished' else 'of'} {r['minutes']:g} min"
             if r.get("minutes")
             else f"{r['epochs_done']}/{r['epochs'] or '?'}", "best val accuracy": r["best_val_accuracy"],
             "last val accuracy": r["last_val_accuracy"], "train time (s)": r["train_time_s"], "state": r["state"],
             "saved model": r["has_model"], "run id": r["run_id"], "problem": r["problem"] or ""} for r in rows]


def refuse_unoffered(run_dir: Path, offered) -> None:
    """RunError when `offered` (a page's sources.offered; None from the command line) refuses the run's stored data
    source: a page starts only what the web app offers, whoever queued the run or wrote its config.json."""
    train = read_config(run_dir).get("train")
    data = train.get("data", "") if isinstance(train, dict) else ""
    if offered is not None and not (isinstance(data, str) and offered(data)):
        raise RunError("This run's data source is not offered by this server; train its model again on a data "
                       "source the app offers.")


def read_job_log(run_id: str, runs_dir=None, lines: int = 20) -> str:
    """The job log's last lines, from its last 64 kB (files.read_tail: a regular file only)."""
    with contextlib.suppress(OSError):
        return "\n".join(read_tail(run_path(run_id, runs_dir) / "job.log", 64 * 2**10).decode(errors="replace")
                         .splitlines()[-lines:])
    return ""
