"""Sweeps: hyperparameter searches that are Optuna studies, whose trials are ordinary runs.

A sweep is an Optuna study (TPE sampler, median pruner on validation accuracy by default) kept in an Optuna storage:
a SQLite file in the runs folder unless a URL such as postgresql://... is given, which lets several machines share
one study (`python -m cifar_core sweep-worker --storage URL --study NAME`). The study's user attributes hold what
a worker needs to join it: the search space (JSON), the base model spec and training settings, and the number of
trials wanted.

Each trial is a run directory like any other, created with jobs.start_job (so the queue decides when it trains and
the job process trains it) with its study, trial number and parameters in config.json. The sweep process follows
the run's metrics.jsonl, reports each epoch's validation accuracy to Optuna and, when the pruner says so, asks the
job to stop between batches. No search of our own: sampling, pruning and counting trials are Optuna's. Where
studies are kept and how one is read back: studies.py.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from pathlib import Path

from . import config as configs
from . import jobs, metrics, presets, resizing, runs, shapes, spec_io, studies
from . import spec as specs
from .files import read_json, touch, write_json
from .locks import process_alive
from .space import SweepError, apply_params, check_space, default_space, suggest

POLL_S = 0.25
ENDED = ("finished", "stopped", "failed", "interrupted", "unknown")
# The trials that take a place among the study's n: a worker that finishes a trial asks for no other while the
# others' running trials fill the study, so two workers sharing 4 trials train 4, not 5 or 6.
COUNTED = ("COMPLETE", "PRUNED", "FAIL", "RUNNING")
STOPPED = "Stopped with the sweep."

class SweepStopped(Exception):
    """The sweep was asked to stop (its stop file); the trial under way ends as failed."""


# ---- the study

def make_pruner(name: str = "median"):
    import optuna

    if name == "median":
        # n_startup_trials: small sweeps (10 trials) must get to prune at all.
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise SweepError(f"The pruner must be one of median, hyperband, none; got {name!r}.")


# The most trials a study takes, from the CLI, the Sweep page or a stored study alike.
MAX_TRIALS = 10_000


def create_study(storage_url: str, study_name: str, model_spec: specs.ModelSpec, config: configs.TrainConfig,
                 space: dict, trials: int, pruner: str = "median", unique: bool = False):
    """Creates the study (or opens the one of that name, if it was made with the same space and model) and saves
    with it what a worker needs. unique: a name made from the time, which a study started in the same second (a
    second tab) has taken: this one is then named with -2, -3, ... (both had run as one study)."""
    import optuna

    studies.check_study_name(study_name)
    space = check_space(space, model_spec)
    if not isinstance(trials, int) or isinstance(trials, bool) or not 1 <= trials <= MAX_TRIALS:
        raise SweepError(f"--trials must be a whole number from 1 to {MAX_TRIALS:,}, got {trials!r}.")
    shapes.validate(model_spec)
    configs.validate_config(config)
    resizing.check(model_spec, config)
    make_pruner(pruner)
    storage, name = studies.open_storage(storage_url), study_name
    for n in range(2, 100):
        try:
            study = optuna.create_study(storage=storage, study_name=studies.check_study_name(name),
                                        direction="maximize", sampler=optuna.samplers.TPESampler(),
                                        pruner=make_pruner(pruner), load_if_exists=not unique)
            break
        except optuna.exceptions.DuplicatedStudyError:
            name = f"{study_name}-{n}"
    else:
        raise SweepError(f"Every name from {study_name} to {name} is taken; give the study a --study name.")
    base = {"spec": spec_io.to_dict(model_spec), "train": configs.to_dict(config)}
    attrs = study.user_attrs
    if "space" in attrs and (attrs["space"] != space or not _same_base(attrs.get("base"), base)):
        raise SweepError(f"The study {name} already exists with another model or search space; give a new "
                         "--study name, or join it with sweep-worker.")
    study.set_user_attr("space", space)
    study.set_user_attr("base", base)
    study.set_user_attr("trials", trials)
    study.set_user_attr("pruner", pruner)
    return study


def _same_base(stored, base: dict) -> bool:
    """Whether a study's stored model and settings are `base`, read as a spec and a config: a study saved before a
    setting existed, or with an older spelling of one (tta true), holds the same recipe."""
    try:
        return {"spec": spec_io.to_dict(spec_io.from_dict(stored["spec"])),
                "train": configs.to_dict(configs.config_from_dict(stored["train"]))} == base
    except (KeyError, TypeError, specs.SpecError):
        return False


def load_study(storage_url: str, study_name: str):
    """The study with its saved settings checked: (study, spec, config, space, trials)."""
    import optuna

    studies.check_study_name(study_name)
    storage = studies.open_storage(storage_url, create=False)
    try:
        pruner = optuna.load_study(study_name=study_name, storage=storage).user_attrs.get("pruner", "median")
        study = optuna.load_study(study_name=study_name, storage=storage, sampler=optuna.samplers.TPESampler(),
                                  pruner=make_pruner(pruner if isinstance(pruner, str) else "median"))
    except KeyError:
        raise SweepError(f"There is no study {study_name} in {studies.redact(storage_url)}.") from None
    attrs = study.user_attrs
    base = attrs.get("base")
    if not isinstance(base, dict) or not isinstance(base.get("spec"), dict) or not isinstance(base.get("train"), dict):
        raise SweepError(f"The study {study_name} was not made by `python -m cifar_core sweep`: it has no model.")
    model_spec, config = spec_io.from_dict(base["spec"]), configs.config_from_dict(base["train"])
    space = check_space(attrs.get("space"), model_spec)
    trials = attrs.get("trials")
    if not isinstance(trials, int) or isinstance(trials, bool) or not 1 <= trials <= MAX_TRIALS:
        raise SweepError(f"The study {study_name} has no number of trials.")
    return study, model_spec, config, space, trials


# ---- a worker: trials as queued runs

def _stop_file(runs_dir, study_name: str) -> Path:
    return Path(runs_dir or runs.default_runs_dir()) / ".sweeps" / f"{study_name}.stop"


def _counted_before(study, number: int) -> int:
    """How many trials ahead of this one take a place among the study's n (surplus ones made by a race of two
    workers do not)."""
    import optuna

    states = tuple(getattr(optuna.trial.TrialState, s) for s in COUNTED)
    return sum(1 for t in study.get_trials(deepcopy=False, states=states)
               if t.number < number and not t.user_attrs.get("surplus"))


def make_objective(study, model_spec, config, space, trials: int, runs_dir, log=print):
    """Optuna's objective: one trial = one run, queued behind any job, followed epoch by epoch."""
    import optuna

    def objective(trial) -> float:
        if _counted_before(study, trial.number) >= trials:  # another worker took the last place meanwhile
            trial.set_user_attr("surplus", True)
            study.stop()
            raise optuna.TrialPruned("the study already has its trials")
        params = suggest(trial, space)
        trial.set_user_attr("params", params)  # as trained: Optuna's own record keeps its samples' every digit
        trial_spec, trial_config = apply_params(model_spec, config, params)
        run_id = jobs.start_job(trial_spec, trial_config, runs_dir, name=f"{study.study_name} #{trial.number}",
                                sweep={"study": study.study_name, "trial": trial.number, "params": params})
        run_dir = runs.run_path(run_id, runs_dir)
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        trial.set_user_attr("run_id", run_id)
        log(f"trial {trial.number}: {params} -> {run_dir}")
        return follow_run(trial, run_dir, runs_dir, study.study_name)

    return objective


def follow_run(trial, run_dir: Path, runs_dir, study_name: str) -> float:
    """Reports each epoch's validation accuracy until the run ends; asks the job to stop when the pruner says so.
    Returns the best validation accuracy; raises TrialPruned, SweepStopped or RunError (a failed run)."""
    import optuna

    reported, pruned, state = set(), False, None
    try:
        while True:
            jobs.start_next(runs_dir)  # the job ahead may have been killed, with nobody to start this one
            state = runs.read_status(run_dir)["state"] if run_dir.is_dir() else "cancelled"
            for record in metrics.epoch_records(run_dir):
                value = record.get("val_accuracy")
                if value is not None and record["epoch"] not in reported:
                    reported.add(record["epoch"])
                    trial.report(value, record["epoch"])
                    if not pruned and trial.should_prune():
                        pruned = True
                        runs.request_stop(run_dir)
            if state in ENDED or state == "cancelled":
                break
            if _stop_file(runs_dir, study_name).exists() or _SIGNALLED:
                (jobs.cancel_queued if state == "queued" else jobs.stop_job)(run_dir.name, runs_dir)
                trial.set_user_attr("error", STOPPED)  # the Sweep page's table: why it has no value
                raise SweepStopped(f"The sweep {study_name} was stopped.")
            time.sleep(POLL_S)
    except KeyboardInterrupt:  # a second signal: the job is asked to stop, without waiting for it
        trial.set_user_attr("error", STOPPED)
        if state == "queued":
            jobs.cancel_queued(run_dir.name, runs_dir)
        elif run_dir.is_dir():
            runs.request_stop(run_dir)
        raise
    if pruned:
        raise optuna.TrialPruned(f"pruned after epoch {max(reported)}")
    best = metrics.best_val_accuracy(run_dir)
    if state != "finished" or best is None:
        status = runs.read_status(run_dir) if run_dir.is_dir() else {}
        error = f"The trial's run {run_dir.name} ended {state}: {status.get('error') or 'no result'}"
        trial.set_user_attr("error", error[:1000])  # what the Sweep page's table says of a failed trial
        raise runs.RunError(error)
    return best


def work(storage_url: str, study_name: str, runs_dir=None, log=print, data: str | None = None) -> int | None:
    """Trains the study's trials here until it has its number (counted across every worker by Optuna's
    MaxTrialsCallback), or the sweep is stopped; returns the signal that stopped this worker, if one did."""
    import optuna

    study, model_spec, config, space, trials = load_study(storage_url, study_name)
    if data:
        config = dataclasses.replace(config, data=data)
    runs_dir = Path(runs_dir or runs.default_runs_dir())
    stop_file = _stop_file(runs_dir, study_name)
    # A worker started by hand drops a stop left from before; one the page started keeps it: the page cleared it
    # before starting this worker, so it is a Stop pressed since (clearing it here had lost one pressed at once).
    if os.environ.get("CIFAR_CORE_LAUNCHED") != "1":
        stop_file.unlink(missing_ok=True)
    optuna.storages.fail_stale_trials(study)  # a trial whose worker died counts as failed, not as running for good
    counted = tuple(getattr(optuna.trial.TrialState, s) for s in COUNTED)
    if len(study.get_trials(deepcopy=False, states=counted)) >= trials or stop_file.exists():  # or stopped already
        stop_file.unlink(missing_ok=True)
        return None

    def stop_when_asked(study, _trial):
        if stop_file.exists() or _SIGNALLED:
            study.stop()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _SIGNALLED.clear()
    previous = _stop_on_signals()
    optuna_log = logging.getLogger("optuna.study._optimize")
    optuna_log.addFilter(_not_a_stop)
    try:
        study.optimize(make_objective(study, model_spec, config, space, trials, runs_dir, log),
                       callbacks=[optuna.study.MaxTrialsCallback(trials, states=counted), stop_when_asked],
                       catch=(runs.RunError, specs.SpecError))
    except SweepStopped as e:
        log(str(e))
    except KeyboardInterrupt:
        if not _SIGNALLED:
            raise
        log(f"The sweep {study_name} was stopped at once; its trial's job stops after its batch.")
    finally:
        stop_file.unlink(missing_ok=True)
        _restore(previous)
        optuna_log.removeFilter(_not_a_stop)
    return _SIGNALLED.get("signum")


def _not_a_stop(record) -> bool:
    """Optuna's log without its traceback of a trial that the user stopped (the sweep says so in one line), and of a
    trial that failed on a RunError or SpecError, whose one line names the error (a 15-line traceback had
    followed it)."""
    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, (runs.RunError, specs.SpecError)):
        record.exc_info = record.exc_text = None
    return not isinstance(error, (SweepStopped, KeyboardInterrupt))


# The signal that stopped this process's sweep: this worker's alone (the stop file stops every worker of a study).
_SIGNALLED: dict = {}


def _stop_on_signals() -> dict:
    """SIGTERM and Ctrl-C stop this worker's sweep as the Sweep page's Stop does: the trial's job is stopped and the
    trial ends failed. Killed at once, the sweep had left its trial's job training on and the trial 'running' in the
    study for good. A second signal stops it at once (KeyboardInterrupt: Optuna still records the trial as failed,
    and the job is asked to stop). A Ctrl-C that this process ignores (started in the background) stays ignored.
    Returns the handlers replaced (none outside the main thread)."""
    def stop(signum, _frame):
        if _SIGNALLED:
            raise KeyboardInterrupt
        _SIGNALLED["signum"] = signum

    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    previous = {sig: handler for sig, handler in previous.items() if handler is not signal.SIG_IGN}
    for sig in previous:
        signal.signal(sig, stop)
    return previous


def _restore(handlers: dict) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: a handler set outside Python


def run_sweep(model_spec: specs.ModelSpec, config: configs.TrainConfig, *, trials: int, space: dict | None = None,
              storage_url: str | None = None, study_name: str | None = None, runs_dir=None, pruner: str = "median",
              log=print) -> dict:
    """Creates (or continues) a study and trains its trials here; returns studies.summary(), and under "signal" the
    signal that stopped it, if one did."""
    runs_dir = Path(runs_dir or runs.default_runs_dir())
    if not storage_url:  # the default database lies in the runs folder, which may be new
        runs_dir.mkdir(parents=True, exist_ok=True)
    storage_url = storage_url or studies.default_storage(runs_dir)
    study_name = create_study(storage_url, study_name or runs.new_run_id(f"sweep-{model_spec.name}"), model_spec,
                              config, space or default_space(model_spec), trials, pruner,
                              unique=not study_name).study_name
    _record_local(runs_dir, study_name, storage_url, os.getpid())  # the Sweep page shows it running, with a Stop
    signum = work(storage_url, study_name, runs_dir, log)
    return {**studies.summary(storage_url, study_name), "signal": signum}


# ---- sweeps started from the page: a background process each

def _local_path(runs_dir) -> Path:
    return Path(runs_dir or runs.default_runs_dir()) / ".sweeps"


def _record_local(runs_dir, study_name: str, storage_url: str, pid: int | None = None) -> None:
    """Notes a study run from this runs folder (for the Sweep page's list); the URL is kept without password."""
    path = _local_path(runs_dir) / f"{study_name}.json"
    old = read_json(path, {})
    old = old if isinstance(old, dict) else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    kept_url = studies.without_password(storage_url)
    write_json(path, {**old, "study": study_name, "storage": kept_url,
                      "created": old.get("created") or time.strftime("%Y-%m-%d %H:%M:%S"),
                      **({"pid": pid} if pid else {})})


def local_studies(runs_dir=None) -> list[dict]:
    """The studies started from this runs folder, newest first: {study, storage, created, pid}."""
    rows = []
    for path in sorted(_local_path(runs_dir).glob("*.json")):
        entry = read_json(path, None)
        if isinstance(entry, dict) and isinstance(entry.get("study"), str) \
                and studies.STUDY_NAME.match(entry["study"]):
            rows.append(entry)
    return sorted(rows, key=lambda r: str(r.get("created")), reverse=True)


def trial_config(model_spec: specs.ModelSpec, epochs: int, data: str, limit: int | None) -> configs.TrainConfig:
    """The training settings of a sweep started from the page: the model's preset's (by name; the defaults for any
    other model) over `epochs`, on `data`, with `limit` training images (0 or None: all), checked as
    config_from_dict checks them (SpecError)."""
    base = presets.train_config_for(model_spec)
    return configs.config_from_dict({**configs.to_dict(configs.with_epochs(base, epochs)), "data": data,
                                     "limit": limit or None})


def start_sweep(model_spec: specs.ModelSpec, config: configs.TrainConfig, space: dict, trials: int,
                runs_dir=None, study_name: str | None = None) -> str:
    """Creates the study in the runs folder's SQLite file and starts `python -m cifar_core sweep-worker` for it as
    a process of its own (it outlives the page); returns the study name."""
    runs_dir = Path(runs_dir or runs.default_runs_dir())
    storage_url = studies.default_storage(runs_dir)
    _local_path(runs_dir).mkdir(parents=True, exist_ok=True)  # the runs folder, holding the database, may be new
    study_name = create_study(storage_url, study_name or runs.new_run_id(f"sweep-{model_spec.name}"), model_spec,
                              config, space, trials, unique=not study_name).study_name
    _stop_file(runs_dir, study_name).unlink(missing_ok=True)  # a Stop from before; one pressed from now on stays
    pid = jobs.spawn(["sweep-worker", "--storage", storage_url, "--study", study_name, "--runs-dir",
                       str(runs_dir.resolve())], _local_path(runs_dir) / f"{study_name}.log")
    _record_local(runs_dir, study_name, storage_url, pid)
    return study_name


MAX_PID = 2**22  # Linux's largest pid_max


def sweep_running(runs_dir, study_name: str) -> bool:
    """Whether the worker started from this folder for the study is alive."""
    entry = read_json(_local_path(runs_dir) / f"{study_name}.json", {})
    pid = entry.get("pid") if isinstance(entry, dict) else None
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid <= MAX_PID:  # os.kill(2**31) overflows
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        # the pid may since be another process's (pid 1 in an edited record made a sweep run for ever), or another
        # study's worker's; a sweep run from the command line (`sweep`) is one too
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        named = args[args.index(b"--study") + 1] if b"--study" in args[:-1] else study_name.encode()
        return state != "Z" and bool({b"sweep", b"sweep-worker"} & set(args)) and named == study_name.encode()
    except OSError:  # no /proc (macOS, Windows): whether the pid runs at all
        return process_alive(pid)


def stop_sweep(runs_dir, study_name: str) -> None:
    """Asks the study's workers in this runs folder to stop: the trial under way is stopped (its model saved) and
    marked failed; no new trial starts."""
    studies.check_study_name(study_name)
    path = _stop_file(runs_dir, study_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    touch(path)
