"""The command line's settings: one flag per TrainConfig field (its type, choices and help from the field), and the
flags read back into a spec and settings, checked as the Train page's are (config.with_changes).
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
    config = configs.with_changes(train_config_for(model_spec), config_file(args))
    return model_spec, configs.with_changes(config, overrides(args))


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
        return files.read_bytes(path, files.MAX_JSON_BYTES)
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
