"""Time to accuracy: trains a preset through the project's loop and prints, per epoch, wall time and validation
accuracy (the held-out last 5,000 training images), then one JSON line. The final accuracy is the run's stored
evaluation of its saved model, with test-time augmentation when the preset uses it; total_time_s is the whole
call: loading the data, building, training, saving and that evaluation.

    python benchmarks/time_to_accuracy.py --preset fast --data ../shared/datasets/cifar10-jpeg \
        [--epochs N] [--precision P]
"""

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

from cifar_core import runs
from cifar_core.presets import get_preset
from cifar_core.train import train, with_epochs

parser = argparse.ArgumentParser()
parser.add_argument("--preset", default="fast")
parser.add_argument("--data", default="")
parser.add_argument("--epochs", type=int)
parser.add_argument("--precision", help="override the preset's precision (auto, float32, mixed_bfloat16, ...)")
args = parser.parse_args()

preset = get_preset(args.preset)
config = dataclasses.replace(preset.train, data=args.data)
if args.precision:
    config = dataclasses.replace(config, precision=args.precision)
if args.epochs:
    config = with_epochs(config, args.epochs)
run_dir = Path(tempfile.mkdtemp(prefix="tta-")) / "run"
start = time.perf_counter()
train(preset.spec, config, run_dir, log=lambda m: print(m, flush=True))
total = time.perf_counter() - start
final = next(iter(runs.read_json(run_dir / "eval.json").values()))
epochs = [r for r in runs.read_metrics(run_dir) if r["kind"] == "epoch"]
for r in epochs:
    print(f"epoch {r['epoch']:>3}  {r['time']:8.1f} s  val_accuracy {r['val_accuracy']:.4f}")
print(json.dumps({"preset": args.preset, "epochs": len(epochs), "split": "val (last 5,000 training images)",
                  "train_time_s": epochs[-1]["time"], "total_time_s": round(total, 1),
                  "last_epoch_val_accuracy": epochs[-1]["val_accuracy"],
                  "final_val_accuracy": final["accuracy"], "final_tta": final.get("tta", False),
                  "run_dir": str(run_dir)}))
