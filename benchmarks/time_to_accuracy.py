"""Time to accuracy: trains a preset through the project's loop and prints, per epoch, wall time and validation
accuracy (the held-out validation split: the last 5,000 training images of CIFAR-10, the last 10% of an image
folder), then the machine header and one JSON line of figures. The final accuracy is the run's stored evaluation of
its saved model, with test-time augmentation when the preset uses it, on the test split or, when the data source has
none, on the validation split; `split` names the one used. total_time_s is the whole call: loading the data,
building, training, saving and that evaluation.

    python benchmarks/time_to_accuracy.py --preset fast --data ../shared/datasets/cifar10-jpeg \\
        [--epochs N | --minutes M] [--precision P]
"""

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import machine

from cifar_core import metrics
from cifar_core.config import PRECISIONS
from cifar_core.presets import PRESETS, get_preset


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="fast", choices=sorted(PRESETS))
    parser.add_argument("--data", default="", help="the data source, as for `python -m cifar_core train --data` "
                                                   "(empty: the default source)")
    parser.add_argument("--epochs", type=int, help="override the preset's number of epochs")
    parser.add_argument("--precision", choices=PRECISIONS, help="override the preset's precision")
    parser.add_argument("--minutes", type=float, help="a time budget instead of the epochs (train --minutes)")
    return parser.parse_args()


def main():
    args = parse_args()
    # The engine imports TensorFlow when it trains; nothing before this line does, so --help answers at once.
    from cifar_core import files, runs
    from cifar_core.config import with_epochs
    from cifar_core.device import resolve_precision
    from cifar_core.train import train

    preset = get_preset(args.preset)
    config = dataclasses.replace(preset.train, data=args.data)
    if args.precision:
        config = dataclasses.replace(config, precision=args.precision)
    if args.epochs:
        config = with_epochs(config, args.epochs)
    if args.minutes:
        config = dataclasses.replace(config, minutes=args.minutes)
    run_dir = Path(tempfile.mkdtemp(prefix="tta-")) / "run"
    start = time.perf_counter()
    train(preset.spec, config, run_dir, log=lambda m: print(m, flush=True))
    total = time.perf_counter() - start

    # A new run holds exactly one evaluation, the one training stored after saving the model.
    final = next(iter(files.read_json(run_dir / "eval.json", {}).values()))
    facts = runs.read_config(run_dir)
    epochs = metrics.epoch_records(run_dir)
    for r in epochs:
        print(f"epoch {r['epoch']:>3}  {r['time']:8.1f} s  val_accuracy {r['val_accuracy']:.4f}")
    machine.print_figures(facts.get("precision") or resolve_precision(config.precision), {
        "preset": args.preset, "data": facts.get("data_source", args.data), "epochs": len(epochs),
        "budget_minutes": config.minutes,
        "val_images": facts.get("data_splits", {}).get("val"),
        "train_time_s": epochs[-1]["time"], "total_time_s": round(total, 1),
        "last_epoch_val_accuracy": epochs[-1]["val_accuracy"],
        "final_accuracy": final["accuracy"], "split": final["split"], "final_images": final["n"],
        "final_tta": final.get("tta", "off"), "run_dir": str(run_dir)})


if __name__ == "__main__":
    main()
