"""Time to accuracy: trains a preset through the project's loop and prints, per epoch, wall time and validation
accuracy (the held-out last 5,000 training images), then one JSON line.

    python benchmarks/time_to_accuracy.py --preset fast --data ../shared/datasets/cifar10-jpeg [--epochs N]
"""

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

from cifar_core import runs
from cifar_core.presets import get_preset
from cifar_core.train import train

parser = argparse.ArgumentParser()
parser.add_argument("--preset", default="fast")
parser.add_argument("--data", default="")
parser.add_argument("--epochs", type=int)
args = parser.parse_args()

preset = get_preset(args.preset)
config = dataclasses.replace(preset.train, data=args.data, **({"epochs": args.epochs} if args.epochs else {}))
run_dir = Path(tempfile.mkdtemp(prefix="tta-")) / "run"
train(preset.spec, config, run_dir, log=lambda m: print(m, flush=True))
epochs = [r for r in runs.read_metrics(run_dir) if r["kind"] == "epoch"]
for r in epochs:
    print(f"epoch {r['epoch']:>3}  {r['time']:8.1f} s  val_accuracy {r['val_accuracy']:.4f}")
print(json.dumps({"preset": args.preset, "epochs": len(epochs), "split": "val (last 5,000 training images)",
                  "train_time_s": epochs[-1]["time"], "val_accuracy": epochs[-1]["val_accuracy"],
                  "best_val_accuracy": max(r["val_accuracy"] for r in epochs), "run_dir": str(run_dir)}))
