"""Where sweeps' Optuna studies are kept and what one holds: storage URLs (a SQLite file in the runs folder, or a
database such as PostgreSQL that several machines share), study names, and a study read back as the CLI's --json and
the Sweep page show it (its trials, the best one, Optuna's own figures).

Apart from sweeps.py, which runs studies, because reading one needs neither a worker nor the queue.
"""

from __future__ import annotations

import contextlib
import math
import re
from pathlib import Path

from . import runs
from .space import SweepError

STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")


HEARTBEAT_GRACE_S = 120  # a running trial whose worker has not signalled for this long is failed (its worker died)
SQLITE_LOCK_WAIT_S = 60


def default_storage(runs_dir=None) -> str:
    return "sqlite:///" + str((Path(runs_dir or runs.default_runs_dir()) / "sweeps.db").resolve())


def open_storage(url: str, create: bool = True):
    """An Optuna RDB storage with heartbeats, so that a trial whose worker died is marked failed, not running
    forever. Any SQLAlchemy URL Optuna takes works (sqlite:///..., postgresql://...). create=False, for a reader or
    a worker of a study made before: an SQLite file that is not there is refused, not made empty (a mistyped
    sweep-worker --storage had left a new database behind)."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats, since 2.9
    if not isinstance(url, str) or "://" not in url:
        raise SweepError(f"--storage must be a database URL such as sqlite:///runs/sweeps.db or "
                         f"postgresql://user@host/db, got {url!r}.")
    if url.startswith("sqlite:"):
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
        file = path.split("?")[0]  # the URL's query (?timeout=...) is SQLite's options, not the file's name
        # SQLite's in-memory database (sqlite://, :memory:): every open would be a new, empty one
        if not file.strip() or file == ":memory:" or "mode=memory" in path:
            raise SweepError("--storage sqlite:/// names no file; give one, such as sqlite:///runs/sweeps.db.")
        if not create and not Path(file).is_file():
            raise SweepError(f"There is no SQLite database {redact(url)}; a study is made by `sweep` first.")
        # no folder is made here (it had made a whole tree for a mistyped path): the sweeps make their runs folder
        if not Path(file).parent.is_dir():
            raise SweepError(f"The folder of the SQLite database {redact(url)} does not exist; make it first, or give "
                             "--storage another.")
    # SQLite's own wait for a lock is 5 s: a worker whose write waited longer died, its trial left running
    waits = {"connect_args": {"timeout": SQLITE_LOCK_WAIT_S}} if url.startswith("sqlite:") and "timeout=" not in url \
        else {}
    try:
        return optuna.storages.RDBStorage(_driver_url(url), heartbeat_interval=30, grace_period=HEARTBEAT_GRACE_S,
                                          engine_kwargs=waits)
    except Exception as e:  # a wrong URL, an absent driver, a server that does not answer
        raise SweepError(f"The sweep storage {redact(url)} cannot be opened: {_first_line(e)}") from None


def _driver_url(url: str) -> str:
    """postgresql://... names SQLAlchemy's psycopg2 driver; the project installs psycopg (3), so a URL that names no
    driver is given that one when psycopg2 is absent."""
    import importlib.util

    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme) and importlib.util.find_spec("psycopg2") is None \
                and importlib.util.find_spec("psycopg") is not None:
            return "postgresql+psycopg://" + url[len(scheme):]
    return url


def without_password(url: str) -> str:
    """The URL without its password, after the user name or in the query: what a record of it may keep."""
    url = re.sub(r"([?&](?:password|passfile|sslpassword)=)[^&]*", r"\1***", str(url), flags=re.IGNORECASE)
    # after any user name, the empty one too (postgresql://:secret@host: libpq then takes the login name)
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


def redact(url: str) -> str:
    """The URL as messages and logs name it, which the Sweep page shows too: without_password, and an SQLite file
    by its name alone, not the server's folders."""
    if str(url).startswith("sqlite:///"):
        return "sqlite:///" + Path(str(url)[len("sqlite:///"):]).name
    return without_password(url)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


def check_study_name(name: str) -> str:
    if not isinstance(name, str) or not STUDY_NAME.match(name):
        raise SweepError(f"A study name must be 1 to 80 letters, digits, '.', '-' or '_', got {name!r}.")
    return name


# ---- reading a study

def summary(storage_url: str, study_name: str) -> dict:
    """{study, trials: [{number, state, value, params, run_dir, error, started, seconds}], best: {value, params,
    run_dir} or None}: the CLI's --json and the Sweep page's table."""
    import optuna

    check_study_name(study_name)
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage_url, create=False))
    except KeyError:
        raise SweepError(f"There is no study {study_name} in {redact(storage_url)}.") from None
    # Optuna fails a trial whose worker died only when a worker asks for the next trial: a study whose every worker
    # was killed had shown its trial running for good. Reading it fails such trials too (a live worker's are fresh);
    # a reader that may not write to the storage leaves them as they are.
    with contextlib.suppress(optuna.exceptions.StorageInternalError):
        optuna.storages.fail_stale_trials(study)
    rows = []
    for t in study.get_trials(deepcopy=False):
        end = t.datetime_complete
        trained = t.user_attrs.get("params")  # what the trial's run trained on (space.suggest), else Optuna's own
        params = trained if isinstance(trained, dict) else dict(t.params)
        rows.append({"number": t.number, "state": t.state.name, "value": t.value, "params": params,
                     "run_dir": _attr_text(t, "run_dir"), "error": _failure(t),
                     "started": t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
                     "seconds": (end - t.datetime_start).total_seconds() if end and t.datetime_start else None})
    complete = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None]
    best = max(complete, key=lambda r: r["value"]) if complete else None
    wanted = study.user_attrs.get("trials")  # a study's attributes are anybody's who can write its storage
    wanted = wanted if isinstance(wanted, int) and not isinstance(wanted, bool) and 0 < wanted <= 10**6 else None
    return {"study": study_name, "space": study.user_attrs.get("space"), "trials_wanted": wanted, "trials": rows,
        "best": {k: best[k] for k in ("number", "value", "params", "run_dir")} if best else None}


def _failure(trial) -> str | None:
    """Why a failed trial failed: what its worker recorded, else (a worker that died first, a study made before the
    record) its run's own error, when the run is on this machine."""
    if trial.state.name != "FAIL":
        return None
    run_dir = _attr_text(trial, "run_dir")
    local = runs.read_status(Path(run_dir)).get("error") if run_dir and Path(run_dir).is_dir() else None
    return _attr_text(trial, "error") or local or "Its worker ended without recording a result (killed, or it crashed)."


def _attr_text(trial, key: str) -> str | None:
    """A trial's attribute when it is text, else None: a study's attributes are anybody's who can write its storage,
    and an error stored as a list took the Sweep page down (the sixth attack)."""
    value = trial.user_attrs.get(key)
    return value if isinstance(value, str) else None


def trials_done(study_summary: dict) -> int:
    """How many of a summary's trials have ended (complete, pruned or failed)."""
    return sum(t["state"] in ("COMPLETE", "PRUNED", "FAIL") for t in study_summary["trials"])


def trial_rows(study_summary: dict) -> list[dict]:
    """A summary's trials as the Sweep page's table shows them: one column per parameter, named "param <name>", the
    run's id (never its folder: pages print no server path), and, when a trial failed, why."""
    failed = any(t.get("error") for t in study_summary["trials"])
    return [{"trial": t["number"], "state": t["state"].lower(), "validation accuracy": t["value"],
             "seconds": t["seconds"],
             **{f"param {k}": v for k, v in t["params"].items()}, "run": _run_id(t["run_dir"]),
             **({"why it failed": t.get("error")} if failed else {})}
            for t in study_summary["trials"]]


def _run_id(run_dir) -> str | None:
    return str(run_dir).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] if run_dir else None


def best_run_id(study_summary: dict) -> str | None:
    """The run id (the last part of its run directory) of the best trial, or None before a trial has completed
    with a run."""
    best = study_summary["best"]
    return _run_id(best["run_dir"]) if best else None


def figures(storage_url: str, study_name: str, names: dict | None = None) -> dict:
    """Optuna's own Plotly figures of the study: optimisation history and parallel coordinates once a trial is
    complete (before, Optuna draws empty axes from -1 to 4), parameter importances once two differ. Accuracies in
    percent, as every page says them; names: {parameter: the word a page uses for it}, in place of Optuna's
    parameter names on the axes."""
    import optuna
    from optuna import visualization as vis

    names = names or {}
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage_url, create=False))
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return {}
    shown = {"history": vis.plot_optimization_history(study, target_name="validation accuracy (%)"),
             "parallel": vis.plot_parallel_coordinate(study, target_name="validation accuracy")}
    # The history in percent, as every page says an accuracy (the trials store fractions). Not through Optuna's
    # `target`: with one, Optuna draws no best-value line and reverses the parallel plot's colours (the best trials
    # were white on white).
    for trace in shown["history"].data:
        if trace.y is not None:
            trace.y = [None if y is None else 100 * y for y in trace.y]
    # The parallel plot's objective axis too: Optuna 5 writes its ticks as annotations on the first axis (x = 0),
    # over lines scaled to [0, 1], so only those texts and the colour bar's ticks change.
    for note in shown["parallel"].layout.annotations:
        if note.x == 0:
            note.text = _percent(note.text)
    # a decimal where the trials lie close: ".0%" labelled a bar of one point 15%, 15%, 15%, 16%
    shown["parallel"].update_traces(marker_colorbar_tickformat=".1~%", selector={"mode": "markers"})
    _recolour_and_rename(shown["parallel"], names)
    if len(complete) >= 2 and len({tuple(sorted(t.params.items())) for t in complete}) >= 2:
        try:
            shown["importances"] = vis.plot_param_importances(study, target_name="validation accuracy")
        except (RuntimeError, ValueError, ZeroDivisionError):
            pass  # importances need parameters that vary among complete trials
        else:
            for bar in shown["importances"].data:  # Optuna's hover names the distribution's class, not the setting
                bar.y = tuple(names.get(name, name) for name in bar.y)
                bar.hovertemplate = "%{y}: %{x:.2f}<extra></extra>"
    # whole trials on the history's axis (Plotly ticked 0, 0.2, 0.4 for two of them)
    shown["history"].update_xaxes(dtick=math.ceil(len(study.get_trials(deepcopy=False)) / 10))
    for figure in shown.values():  # legends below the plots: beside them they squeezed the plot on a phone; room
        # at the sides for the parallel plot's outer axis labels and the importances' values, cut off on a phone
        figure.update_layout(legend={"orientation": "h", "y": -0.25}, margin={"l": 50, "r": 50})
    return shown


def _recolour_and_rename(parallel, names: dict) -> None:
    """The parallel plot's lines coloured from a scale without white, and its axes named as the page names the
    settings. Optuna colours them on its Blues scale, which begins at white: the worst trials' lines were white on
    the white page (a new user saw one line of four). Each line's first point is its accuracy scaled to [0, 1]."""
    from plotly.colors import sample_colorscale, sequential

    scale = sequential.Blues[3:]  # from a pale but visible blue
    for trace in parallel.data:
        if trace.mode == "markers":  # the colour bar's trace
            trace.marker.colorscale = scale
        elif trace.mode == "lines" and trace.y and isinstance(trace.y[0], (int, float)) and 0 <= trace.y[0] <= 1:
            trace.line.color = sample_colorscale(scale, [trace.y[0]])[0]
        if trace.customdata is not None:  # the hover's (setting, value) pairs, the accuracy in percent as on its axis
            trace.customdata = [[names.get(row[0], row[0]), _percent(row[1]) if row[0] == "validation accuracy"
                                 else row[1]] for row in trace.customdata]
    axis = parallel.layout.xaxis
    if axis.ticktext:
        axis.ticktext = tuple(names.get(text, text) for text in axis.ticktext)


def _percent(fraction: str) -> str:
    try:
        return f"{100 * float(fraction):.4g}%"
    except (TypeError, ValueError):
        return fraction
