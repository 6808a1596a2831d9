"""Time from Start to the first curve point: jobs.start_job (what the Train page's Start button calls), then poll
metrics.jsonl until its first record appears; the job is then stopped. With --warm, as on the Train page:
jobs.warm_up first (the page calls it when it is shown), and Start once the standby process says it is ready.

    python benchmarks/first_point.py --preset fast --data ../shared/datasets/cifar10-jpeg [--warm]
"""

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

from cifar_core import jobs, runs
from cifar_core.presets import get_preset

parser = argparse.ArgumentParser()
parser.add_argument("--preset", default="fast")
parser.add_argument("--data", default="sample")
parser.add_argument("--warm", action="store_true", help="hand the job to a ready standby process")
args = parser.parse_args()

preset = get_preset(args.preset)
runs_dir = tempfile.mkdtemp(prefix="first-point-")
if args.warm:
    os.environ["CIFAR_CORE_STANDBY"] = "1"
    jobs.warm_up(runs_dir)
    log = Path(runs_dir) / ".standby.log"
    while "ready" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.05)
start = time.perf_counter()
run_id = jobs.start_job(preset.spec, dataclasses.replace(preset.train, data=args.data), runs_dir)
run_dir = runs.run_path(run_id, runs_dir)
while not runs.read_metrics(run_dir) and time.perf_counter() - start < 120:
    time.sleep(0.05)
seconds = time.perf_counter() - start
jobs.stop_job(run_id, runs_dir)
print(json.dumps({"preset": args.preset, "data": args.data, "warm": args.warm,
                  "seconds_to_first_point": round(seconds, 2)}))
