"""The command line's flags: its parser (every command and flag with its help), one flag per TrainConfig field (its
type, choices and help from the field), and the flags read back into a spec and settings, checked as the Train page's
are (config.with_changes).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import config as configs
from . import files, runs, spec_io
from . import spec as specs


def overrides(args) -> dict:
    """The TrainConfig fields given as flags (each flag is made from its field, see add_config_flags)."""
    return {name: getattr(args, name) for name in configs.FIELDS if getattr(args, name, None) is not None}


def new_run_settings(args) -> tuple[specs.ModelSpec, configs.TrainConfig]:
    """The spec and settings the flags ask for: --preset or --spec, then --config, then each setting's flag. A spec
    file starts from the settings the Train page gives it (presets.train_config_for): its preset's when it carries a
    preset's name, as a spec downloaded from the page after editing a preset does, else TrainConfig's defaults."""
    from .presets import get_preset, train_config_for

    if bool(args.preset) == bool(args.spec):
        raise specs.SpecError("Give exactly one of --preset NAME or --spec FILE.")
    if args.preset:
        model_spec = get_preset(args.preset).spec
    else:
        model_spec = spec_io.from_json(read_text(args.spec, "--spec"))
    given = overrides(args)
    if given.get("minutes") and "epochs" in given:  # the budget sets the epochs: the other would be dropped unsaid
        raise specs.SpecError("Give --epochs or --minutes, not both: a time budget trains as many epochs as fit.")
    config = configs.with_changes(train_config_for(model_spec), config_file(args))
    return model_spec, configs.with_changes(config, given)


def config_file(args) -> dict:
    if not args.config:
        return {}
    changes = files.parse_json(read_text(args.config, "--config"))
    if not isinstance(changes, dict):
        raise specs.SpecError("--config must be a JSON object of training settings, such as {\"epochs\": 5}.")
    return changes


def check_resume_flags(args, run_dir: Path, model_spec, config) -> None:
    """A resumed run trains with the settings it was started with. Flags given beside --resume may repeat them (the
    same command line with --resume added) but not change them: dropped in silence, --epochs 50 would read as a
    longer run. Only what the flags name is compared (a setting left out keeps the run's). --name renames the run."""
    from .presets import get_preset

    given = {**config_file(args), **overrides(args)}
    configs.with_changes(config, given)  # each value checked, as for a new run
    changed = [f"{name} {value!r} (the run has {getattr(config, name)!r})" for name, value in given.items()
               if value != getattr(config, name)]
    asked_spec = get_preset(args.preset).spec if args.preset else \
        spec_io.from_json(read_text(args.spec, "--spec")) if args.spec else model_spec
    if asked_spec != model_spec:
        changed.insert(0, f"the model {asked_spec.name} (the run trains {model_spec.name} as it was saved)")
    if changed:
        raise runs.RunError("--resume continues the run with the settings it was started with, but the flags change "
                            f"{'; '.join(changed[:3])}. To train differently, start a new run.")
    if args.name:
        runs.rename_run(run_dir, args.name)


def read_text(path: str, flag: str) -> bytes:
    try:  # a regular file only: a named pipe given as --spec had waited for a writer forever
        return files.read_bytes(path, files.MAX_JSON_BYTES, follow_links=True)
    except OSError as e:
        raise specs.SpecError(f"{flag} {path} cannot be read ({e.strerror or type(e).__name__}).") from None


def add_config_flags(parser) -> None:
    """One flag per TrainConfig field, its type and help from the field (config.describe)."""
    for name in configs.FIELDS:
        flag, kind = "--" + name.replace("_", "-"), configs.kind(name)
        if kind is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None,
                                help=configs.describe(name))
        else:
            parser.add_argument(flag, dest=name, type=kind, default=None, help=configs.describe(name),
                                metavar=name.upper(), choices=configs.FIELDS[name].metadata["choices"])


RUNS_DIR_HELP = "the runs folder (default: $CIFAR_RUNS_DIR, else runs/ in the current folder)"
JSON_HELP = "print one JSON document on stdout, and everything else on stderr"
MODEL_HELP = "'default' (the shipped model), a run id, a run folder or a .keras file"


def parser() -> argparse.ArgumentParser:
    """Every command and its flags, as DESIGN.md's CLI contract names them."""
    from .presets import PRESETS

    top = argparse.ArgumentParser(prog="python -m cifar_core", description="CIFAR-10 CNN Studio engine. A data "
                                  "source named nowhere is $CIFAR10_DATA, else CIFAR-10 from Keras, else (offline) the "
                                  "embedded sample; runs go to $CIFAR_RUNS_DIR, else runs/.")
    sub = top.add_subparsers(dest="command", required=True)
    preset_help = f"a preset to start from: {', '.join(PRESETS)}"

    p = sub.add_parser("train", help="train a preset or a spec into a run directory",
                       description="Train a preset or a spec into a run directory. The defaults below are "
                       "TrainConfig's; a preset, and a spec file that keeps a preset's name, start from that preset's "
                       "settings.")
    p.add_argument("--preset", help=preset_help)
    p.add_argument("--spec", help="a model spec JSON file (the Build page's download)")
    p.add_argument("--config", help="a JSON file of training settings (TrainConfig fields)")
    add_config_flags(p)
    p.add_argument("--runs-dir", help=RUNS_DIR_HELP)
    p.add_argument("--run-dir", help="the run's folder: a new one, or with --resume one to continue")
    p.add_argument("--name", help="a display name for the run")
    p.add_argument("--resume", action="store_true", help="continue the stopped or interrupted run in --run-dir")
    p.add_argument("--queue", action="store_true", help="add the run behind the running job and return at once")

    p = sub.add_parser("sweep", help="a hyperparameter search (an Optuna study) whose trials are runs")
    p.add_argument("--preset", help=preset_help)
    p.add_argument("--spec", help="a model spec JSON file")
    p.add_argument("--space", help="a JSON file of the search space (default: one that suits the model)")
    p.add_argument("--trials", type=int, required=True, help="how many trials the study has in all")
    p.add_argument("--storage", help="an Optuna storage URL (default: sqlite:///RUNS_DIR/sweeps.db)")
    p.add_argument("--study", help="the study's name (default: made from the time and the model)")
    p.add_argument("--data", help=configs.describe("data"))
    p.add_argument("--epochs", type=int, help=configs.describe("epochs"))
    p.add_argument("--limit", type=int, help=configs.describe("limit"))
    p.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median",
                   help="how trials that fall behind are stopped early (default: median)")
    p.add_argument("--runs-dir", help=RUNS_DIR_HELP)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(config=None)

    p = sub.add_parser("sweep-worker", help="join a study (from any machine) and train its trials here")
    p.add_argument("--storage", required=True, help="the study's Optuna storage URL")
    p.add_argument("--study", required=True, help="the study's name")
    p.add_argument("--data", help="the data source on this machine (default: the study's)")
    p.add_argument("--runs-dir", help=RUNS_DIR_HELP)
    p.add_argument("--json", action="store_true", help=JSON_HELP)

    p = sub.add_parser("evaluate", help="evaluate a model on the test or validation split")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--data", help=configs.describe("data"))
    p.add_argument("--split", choices=("test", "val"), default="test",
                   help="the split to evaluate (default: test; a source without one evaluates val, and says so)")
    p.add_argument("--runs-dir", help=RUNS_DIR_HELP)
    p.add_argument("--json", action="store_true", help=JSON_HELP)

    p = sub.add_parser("predict", help="classify image files")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, WebP, GIF, BMP)")
    p.add_argument("--top-k", type=int, default=3,
                   help="how many classes to list for each image, at least 1 (default: 3; at most the model's classes)")
    p.add_argument("--runs-dir", help=RUNS_DIR_HELP)
    p.add_argument("--json", action="store_true", help=JSON_HELP)

    p = sub.add_parser("saliency", help="write a Grad-CAM overlay of an image as PNG")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("image", help="an image file")
    p.add_argument("--class", dest="class_name", help="the class to explain (default: the predicted one)")
    p.add_argument("--opacity", type=float, default=0.5, help="the heatmap's opacity, from 0 to 1 (default: 0.5)")
    p.add_argument("--out", required=True, help="the PNG file to write")
    p.add_argument("--runs-dir", help=RUNS_DIR_HELP)

    p = sub.add_parser("standby", help="wait with TensorFlow imported for a job from the Train page")
    p.add_argument("--runs-dir", required=True, help="the runs folder whose next job it takes")
    p.add_argument("--parent", type=int, help="exit when this process (the server) has ended")

    p = sub.add_parser("presets", help="list the presets")
    p.add_argument("--json", action="store_true", help=JSON_HELP)

    p = sub.add_parser("runs", help="list the runs")
    p.add_argument("--runs-dir", help=RUNS_DIR_HELP)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    return top
