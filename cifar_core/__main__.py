"""Command line: python -m cifar_core train | evaluate | predict | saliency | presets | runs (and standby, which
the Train page starts).

A user's mistake (bad spec, missing data, unreadable image) prints one sentence to stderr and exits with status 2
(1 for predict when some image failed), never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from . import runs
from . import spec as specs
from .data import DataError


def _cmd_train(args) -> int:
    from .presets import get_preset
    from .train import TrainConfig, config_from_dict, train, with_epochs

    if args.resume:
        if not args.run_dir:
            raise runs.RunError("--resume needs --run-dir of the run to continue.")
        saved = runs.read_json(Path(args.run_dir) / "config.json")
        if not saved:
            raise runs.RunError(f"There is no run at {args.run_dir} to resume.")
        model_spec, config = specs.from_dict(saved["spec"]), config_from_dict(saved["train"])
    else:
        if bool(args.preset) == bool(args.spec):
            raise specs.SpecError("give exactly one of --preset NAME or --spec FILE.")
        if args.preset:
            preset = get_preset(args.preset)
            model_spec, config = preset.spec, preset.train
        else:
            model_spec, config = specs.from_json(Path(args.spec).read_text()), TrainConfig()
        if args.config:
            config = config_from_dict({**dataclasses.asdict(config), **json.loads(Path(args.config).read_text())})
        if args.epochs and isinstance(args.epochs, int) and args.epochs >= 1:
            config = with_epochs(config, args.epochs)
        overrides = {k: v for k, v in {"epochs": args.epochs, "batch_size": args.batch_size, "data": args.data,
                                        "limit": args.limit, "strategy": args.strategy,
                                        "learning_rate": args.learning_rate, "precision": args.precision}.items()
                     if v is not None}
        config = config_from_dict({**dataclasses.asdict(config), **overrides})
    specs.validate(model_spec)  # before any directory is created
    run_dir = Path(args.run_dir) if args.run_dir else runs.run_path(runs.new_run_id(model_spec.name), args.runs_dir)
    if args.name and not args.resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        runs.rename_run(run_dir, args.name)
    try:
        train(model_spec, config, run_dir, resume=args.resume, log=lambda m: print(m, flush=True))
    except (specs.SpecError, runs.RunError, DataError):
        raise
    except Exception as e:  # the job already wrote the reason into status.json; show it as one sentence
        status = runs.read_status(run_dir)
        print(status.get("error") or str(e), file=sys.stderr)
        print(run_dir)
        return 1
    print(run_dir)
    return 0


def _cmd_evaluate(args) -> int:
    from .evaluate import evaluate_model

    result = evaluate_model(args.model, split=args.split, source=args.data, runs_dir=args.runs_dir)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k not in ("predictions", "model_sha256")}))
    else:
        note = " (this source has no test split)" if args.split == "test" and result["split"] == "val" else ""
        print(f"{result['split']} split{note}: accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}, "
              f"top-3 {result['top3_accuracy']:.4f} on {result['n']} images")
    return 0


def _cmd_predict(args) -> int:
    from .predict import classify, load_model

    model_path, run_dir = runs.resolve_model(args.model, args.runs_dir)
    model = load_model(model_path)
    names = runs.class_names_for(run_dir, model.output_shape[-1])
    files = []
    for image in args.images:
        try:
            files.append((image, Path(image).read_bytes()))
        except OSError as e:
            files.append((image, b""))
            print(f"{image}: cannot be read ({e.strerror}).", file=sys.stderr)
    results = classify(model, names, files, k=args.top_k, tta=runs.tta_for(run_dir))
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            print(f"{r['file']}: " + (r["error"] if "error" in r else
                                       ", ".join(f"{t['label']} {t['probability']:.3f}" for t in r["top"])))
    return 1 if any("error" in r for r in results) else 0


def _cmd_saliency(args) -> int:
    from .explain import saliency_png
    from .predict import load_model, to_input_array

    model_path, run_dir = runs.resolve_model(args.model, args.runs_dir)
    model = load_model(model_path)
    names = runs.class_names_for(run_dir, model.output_shape[-1])
    if args.class_name is not None and args.class_name not in names:
        raise ValueError(f"--class must be one of {', '.join(names)}, got {args.class_name!r}.")
    image = to_input_array(Path(args.image).read_bytes())
    class_index = names.index(args.class_name) if args.class_name else None
    png, explained = saliency_png(model, image, class_index, opacity=args.opacity)
    Path(args.out).write_bytes(png)
    print(f"Grad-CAM for class {names[explained]} written to {args.out}")
    return 0


def _cmd_standby(args) -> int:
    """Waits, TensorFlow imported, for the job the Train page's Start hands over (see jobs.py), then trains it
    with its output in the run's job.log."""
    from .jobs import run_standby

    command = run_standby(args.runs_dir)
    if command is None:
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    log = os.open(Path(command[2]) / "job.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    return main(command)


def _cmd_presets(args) -> int:
    from .presets import PRESETS

    rows = [{"name": n, "params": specs.summary(p.spec)["params"], "why": p.why} for n, p in PRESETS.items()]
    print(json.dumps(rows) if args.json else "\n".join(f"{r['name']:<12} {r['params']:>12,}  {r['why']}"
                                                       for r in rows))
    return 0


def _cmd_runs(args) -> int:
    rows = runs.list_runs(args.runs_dir)
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            acc = f"{r['best_val_accuracy']:.4f}" if r["best_val_accuracy"] is not None else "-"
            print(f"{r['run_id']:<40} {r['state']:<12} epochs {r['epochs_done']}/{r['epochs']}  best val {acc}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cifar_core", description="CIFAR-10 CNN Studio engine")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a preset or a spec into a run directory")
    p.add_argument("--preset")
    p.add_argument("--spec", help="a model spec JSON file")
    p.add_argument("--config", help="a JSON file of training settings (TrainConfig fields)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--precision")
    p.add_argument("--data", help="keras, sample, or a path (default: $CIFAR10_DATA or keras)")
    p.add_argument("--limit", type=int, help="use only the first N training images")
    p.add_argument("--strategy", help="default, mirrored or multiworker")
    p.add_argument("--runs-dir")
    p.add_argument("--run-dir")
    p.add_argument("--name", help="a display name for the run")
    p.add_argument("--resume", action="store_true")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a model on the test or validation split")
    p.add_argument("model", help="'default', a run id, a run directory or a .keras file")
    p.add_argument("--data")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--runs-dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files")
    p.add_argument("model")
    p.add_argument("images", nargs="+")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--runs-dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("saliency", help="write a Grad-CAM overlay of an image as PNG")
    p.add_argument("model")
    p.add_argument("image")
    p.add_argument("--class", dest="class_name", help="the class to explain (default: the predicted one)")
    p.add_argument("--opacity", type=float, default=0.5)
    p.add_argument("--out", required=True)
    p.add_argument("--runs-dir")
    p.set_defaults(func=_cmd_saliency)

    p = sub.add_parser("standby", help="wait with TensorFlow imported for a job from the Train page")
    p.add_argument("--runs-dir", required=True)
    p.set_defaults(func=_cmd_standby)

    p = sub.add_parser("presets", help="list the presets")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_presets)

    p = sub.add_parser("runs", help="list the runs")
    p.add_argument("--runs-dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_runs)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (specs.SpecError, runs.RunError, DataError, ValueError, KeyError, FileNotFoundError,
            runs.DiskFullError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
