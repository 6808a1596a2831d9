"""Command line: python -m cifar_core train | sweep | sweep-worker | evaluate | predict | saliency | presets | runs
(and standby, which the Train page starts).

A user's mistake (bad spec, missing data, unreadable image) prints one sentence to stderr and exits with status 2
(1 for predict when some image failed), never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from pathlib import Path

from . import files, flags, runs, shapes
from . import spec as specs
from .data import DataError
from .images import ImageError


def _cmd_train(args) -> int:
    if args.queue:
        return _cmd_queue(args)
    run_dir = Path(args.run_dir) if args.run_dir else None
    # a new run's folder must have a name the runs list and the app can show (a run to resume keeps its own)
    if run_dir and not args.resume and (args.preset or args.spec) and not runs.RUN_ID.match(run_dir.name):
        raise runs.RunError(f"--run-dir's folder name must be 1 to 80 letters, digits, '-' or '_', the first a letter "
                            f"or a digit, got {run_dir.name!r}.")
    if args.resume or (run_dir and not args.preset and not args.spec):
        if not run_dir:
            raise runs.RunError("--resume needs --run-dir of the run to continue.")
        if args.resume and os.environ.get("CIFAR_CORE_LAUNCHED") != "1":
            (run_dir / "stop").unlink(missing_ok=True)  # a stop request left behind by a killed job
        if not args.resume and not run_dir.exists():
            raise runs.RunError(f"{run_dir} does not exist; give --preset or --spec to train a new run into it.")
        if not args.resume and not runs.is_fresh(run_dir):
            raise runs.RunError(f"{run_dir} is not a new run; give --preset or --spec to train into a new folder, or "
                                "--resume to continue the run there.")
        model_spec, config = runs.read_spec_and_config(run_dir)
        if args.resume:
            flags.check_resume_flags(args, run_dir, model_spec, config)
    else:
        model_spec, config = flags.new_run_settings(args)
    made = []  # the folders claimed for a new run here, removed again if it is refused before it begins
    if not run_dir:
        runs_dir = Path(args.runs_dir or runs.default_runs_dir())
        made = [] if runs_dir.exists() else [runs_dir]
        run_dir = runs.claim_run_dir(model_spec.name, runs_dir)
        made.insert(0, run_dir)
    _say_default_source(config.data)
    try:
        return _train_foreground(model_spec, config, run_dir, args)
    finally:
        for folder in made:
            files.remove_empty_dir(folder)
        _start_next_quietly(run_dir.parent)  # however this job ended, the oldest queued run behind it starts


def _train_foreground(model_spec, config, run_dir: Path, args) -> int:
    from .train import train

    try:
        train(model_spec, config, run_dir, resume=args.resume, log=lambda m: print(m, flush=True), name=args.name)
    except (specs.SpecError, runs.RunError, DataError, files.DiskFullError):
        raise
    except Exception as e:  # the job already wrote the reason into status.json; show it as one sentence
        print(runs.read_status(run_dir).get("error") or str(e), file=sys.stderr)
        if run_dir.is_dir() and any(run_dir.iterdir()):  # the last line names the run only where there is one
            print(run_dir)
        return 1
    print(run_dir)
    return 0


def _start_next_quietly(runs_dir) -> None:
    from . import jobs

    try:
        jobs.start_next(runs_dir)
    except Exception as e:  # the queue is also started by whoever polls next; this job's own outcome stands
        print(f"The next queued run could not be started from here: {e}", file=sys.stderr)


def _cmd_queue(args) -> int:
    """train --queue: the run is added behind the running jobs (or starts at once in a free slot)."""
    from . import jobs

    if args.run_dir or args.resume:
        raise runs.RunError("--queue makes a new run in --runs-dir; it takes neither --run-dir nor --resume.")
    model_spec, config = flags.new_run_settings(args)
    _check_source(config.data)  # now, not once the job behind which it waits has ended
    run_id = jobs.start_job(model_spec, config, args.runs_dir, name=args.name)
    print(runs.run_path(run_id, args.runs_dir))
    return 0


def _cmd_evaluate(args) -> int:
    from .evaluate import evaluate_model

    _say_default_source(args.data)
    result = evaluate_model(args.model, split=args.split, source=args.data, runs_dir=args.runs_dir,
                            progress=_progress_printer("Predicting"), log=_note)
    if args.json:
        shown = {k: v for k, v in result.items() if k not in ("predictions", "model_sha256")}
        _print_json(shown, args)
    else:
        note = " (this source has no test split)" if args.split == "test" and result["split"] == "val" else ""
        print(f"{result['split']} split{note}: accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}, "
              f"top-3 {result['top3_accuracy']:.4f} on {result['n']} images")
    return 0


def _print_json(value, args) -> None:
    """The command's JSON on the real stdout, a number that is not finite as null: json.dumps writes NaN, which no
    JSON reader takes (a diverged model's loss, a hostile model's probabilities)."""
    def finite(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        return [finite(x) for x in v] if isinstance(v, (list, tuple)) else v
    print(json.dumps(finite(value), allow_nan=False), file=args.stdout)


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _progress_printer(what: str):
    """progress(fraction) on stderr: one updating line in a terminal, a line per tenth when piped."""
    shown = {"tenth": -1}

    def progress(fraction: float) -> None:
        if sys.stderr.isatty():
            print(f"\r{what}: {fraction:.0%}", end="\n" if fraction >= 1 else "", file=sys.stderr, flush=True)
        elif int(fraction * 10) > shown["tenth"]:
            shown["tenth"] = int(fraction * 10)
            _note(f"{what}: {fraction:.0%}")
    return progress


def _say_default_source(source: str | None) -> None:
    """With no data source named, the default may fall back to the sample: say so in one line on stderr."""
    if not source:
        from .data import resolve_default_source

        _, note = resolve_default_source()
        if note:
            _note(note)


def _check_source(source: str | None) -> None:
    """A queued run's or a joining sweep worker's data source, checked now (data.check_source), not once the job
    ahead has ended or in every trial. A fallback to the sample is said."""
    from .data import check_source

    _say_default_source(source)
    check_source(source)


def _cmd_predict(args) -> int:
    from .images import ImageError, read_image_file
    from .models import class_names_for, load_model, resolve_model, tta_for
    from .predict import classify

    if args.top_k < 1:
        raise specs.SpecError(f"--top-k must be at least 1 (how many classes to list for each image), got "
                              f"{args.top_k}.")
    model_path, run_dir = resolve_model(args.model, args.runs_dir)
    model = load_model(model_path)
    names = class_names_for(run_dir, model.output_shape[-1])
    results = {}
    # 32 files at a time: every file's bytes at once (up to 10 MB each) had grown with the number of files
    for first in range(0, len(args.images), 32):
        readable = []
        for position, image in enumerate(args.images[first:first + 32], start=first):
            try:
                readable.append((position, image, read_image_file(image)))
            except ImageError as e:
                results[position] = {"file": image, "error": str(e)}
        classified = classify(model, names, [(name, data) for _, name, data in readable], k=args.top_k,
                              tta=tta_for(run_dir))
        results.update({position: result for (position, _, _), result in zip(readable, classified)})
    ordered = [results[i] for i in range(len(args.images))]
    if args.json:
        _print_json(ordered, args)
    else:
        for r in ordered:
            print(f"{r['file']}: " + (r["error"] if "error" in r else
                                       ", ".join(f"{t['label']} {t['probability']:.3f}" for t in r["top"])))
            if "note" in r:
                _note(f"{r['file']}: {r['note']}")
    return 1 if any("error" in r for r in ordered) else 0


def _cmd_saliency(args) -> int:
    import math

    from .explain import saliency_png
    from .images import read_image_file, to_input_array
    from .models import class_names_for, load_model, resolve_model

    if not (math.isfinite(args.opacity) and 0 <= args.opacity <= 1):
        raise ValueError(f"--opacity must be a number from 0 to 1, got {args.opacity}.")
    out = Path(args.out)
    if out.is_dir() or not out.parent.is_dir():
        raise ValueError(f"--out must be a file name in an existing folder, got {args.out}.")
    if out.is_symlink():  # replaced by the picture, the link would be gone and what it points to unchanged
        raise ValueError(f"--out is a symbolic link; give the file it points to, or a new name, not {args.out}.")
    model_path, run_dir = resolve_model(args.model, args.runs_dir)
    model = load_model(model_path)
    names = class_names_for(run_dir, model.output_shape[-1])
    if args.class_name is not None and args.class_name not in names:
        raise ValueError(f"--class must be one of {', '.join(names)}, got {args.class_name!r}.")
    image = to_input_array(read_image_file(args.image))
    class_index = names.index(args.class_name) if args.class_name else None
    png, explained = saliency_png(model, image, class_index, opacity=args.opacity)
    files.write_atomic(out, png)
    print(f"Grad-CAM for class {names[explained]} written to {args.out}")
    return 0


def _cmd_standby(args) -> int:
    """Waits, TensorFlow imported, for the job the Train page's Start hands over (see jobs.py), then trains it
    with its output in the run's job.log."""
    from .standby import run_standby

    command = run_standby(args.runs_dir, args.parent)
    if command is None:
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        log = files.open_for_append(Path(command[2]) / "job.log")
    except OSError as e:  # a link or a folder in its place: the run says why, as a spawned job's does
        runs.write_status(Path(command[2]), state="failed", error=f"The job could not be started: {e}.")
        return 1
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    return main(command)


def _cmd_presets(args) -> int:
    from .presets import PRESETS

    rows = [{"name": n, "params": shapes.summary(p.spec)["params"], "why": p.why} for n, p in PRESETS.items()]
    if args.json:
        _print_json(rows, args)
    else:
        print("\n".join(f"{r['name']:<12} {r['params']:>12,}  {r['why']}" for r in rows))
    return 0


def _cmd_runs(args) -> int:
    from . import jobs

    root = Path(args.runs_dir or runs.default_runs_dir())
    if os.path.lexists(root) and not root.is_dir():  # a file, a broken link, a loop of links
        raise runs.RunError(f"The runs folder {root} is not a folder.")
    jobs.start_next(args.runs_dir)  # a queue stalled behind a killed job moves on when somebody looks
    rows = runs.list_runs(args.runs_dir)
    if args.json:  # "id" is the contract's name (DESIGN.md), "run_id" the app's
        _print_json([{"id": r["run_id"], **r} for r in rows], args)
    elif not rows:
        print(f"No runs yet in {os.path.abspath(args.runs_dir or runs.default_runs_dir())}.")  # a loop: no resolve
    else:
        for r in rows:
            acc = f"{r['best_val_accuracy']:.4f}" if r["best_val_accuracy"] is not None else "-"
            name = "" if r["name"] == r["run_id"] else f"  {r['name']!r}"
            detail = f"  ({r['problem']})" if r["problem"] else ""
            epochs = runs.table_rows([r])[0]["epochs"]
            print(f"{r['run_id']:<40} {r['state']:<12} epochs {epochs}  "
                  f"best val {acc}{name}{detail}")
    return 0


def _print_sweep(result: dict, args) -> None:
    if args.json:
        keys = ("number", "state", "value", "params", "run_dir", "seconds")
        _print_json({"study": result["study"], "best": result["best"],
                     "trials": [{k: t[k] for k in keys} for t in result["trials"]]}, args)
        return
    for t in result["trials"]:
        value = f"{t['value']:.4f}" if t["value"] is not None else "-"
        print(f"trial {t['number']:>3}  {t['state']:<9} {value:>7}  {json.dumps(t['params'])}  {t['run_dir'] or ''}")
    best = result["best"]
    print(f"best: trial {best['number']}, validation accuracy {best['value']:.4f}, {best['run_dir']}" if best
          else "best: no trial has completed.")


def _cmd_sweep(args) -> int:
    from . import sweeps
    from .data import load_data
    from .space import parse_space

    model_spec, config = flags.new_run_settings(args)
    # The data source loaded whole before the study: on one that is missing or cannot be read, every trial had
    # failed with Optuna's traceback (the trials then use its decode cache)
    _say_default_source(config.data)
    load_data(config.data or None)
    space = parse_space(flags.read_text(args.space, "--space"), model_spec) if args.space else None
    result = sweeps.run_sweep(model_spec, config, trials=args.trials, space=space, storage_url=args.storage,
                              study_name=args.study, runs_dir=args.runs_dir, pruner=args.pruner,
                              log=lambda m: print(m, flush=True))
    _print_sweep(result, args)
    return 128 + result["signal"] if result["signal"] else 0  # stopped by a signal: as a shell reports one


def _cmd_sweep_worker(args) -> int:
    from . import studies, sweeps

    if args.data:
        _check_source(args.data)
    signum = sweeps.work(args.storage, args.study, args.runs_dir, log=lambda m: print(m, flush=True), data=args.data)
    _print_sweep(studies.summary(args.storage, args.study), args)
    return 128 + signum if signum else 0


COMMANDS = {"train": _cmd_train, "sweep": _cmd_sweep, "sweep-worker": _cmd_sweep_worker, "evaluate": _cmd_evaluate,
            "predict": _cmd_predict, "saliency": _cmd_saliency, "standby": _cmd_standby, "presets": _cmd_presets,
            "runs": _cmd_runs}


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = flags.parser().parse_args(argv)
    # With --json, stdout holds the JSON alone: whatever else is printed meanwhile goes to stderr (Keras prints its
    # download's progress to stdout), and the command prints its JSON to args.stdout.
    args.stdout = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr if getattr(args, "json", False) else sys.stdout):
            return COMMANDS[args.command](args)
    except (specs.SpecError, runs.RunError, DataError, ImageError, ValueError, KeyError, files.DiskFullError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"error: {message}", file=sys.stderr)
        return 2
    except OSError as e:  # a path given that is not what the command needs (a file as --run-dir, say)
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or type(e).__name__}.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C where no command handles it (train and sweep do): a sentence, not a traceback
        print("error: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
