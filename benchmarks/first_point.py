"""Time from Start to the first curve point: jobs.start_job (what the Train page's Start button calls), then poll
metrics.jsonl until its first record appears; the job is then stopped. With --warm, as on the Train page:
jobs.warm_up first (the page calls it when it is shown), and Start once the standby process says it is ready.
Prints the machine header, then one JSON line of figures.

    python benchmarks/first_point.py --preset fast --data ../shared/datasets/cifar10-jpeg [--warm]
"""

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import machine

from cifar_core import metrics
from cifar_core.presets import PRESETS, get_preset

TIMEOUT_S = 120  # a job that has not logged a point by then has failed; its job.log in the run says why


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="fast", choices=sorted(PRESETS))
    parser.add_argument("--data", default="sample", help="the data source, as for `python -m cifar_core train --data`")
    parser.add_argument("--warm", action="store_true", help="hand the job to a ready standby process")
    return parser.parse_args()


def main():
    args = parse_args()
    from cifar_core import jobs, runs

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
    while not metrics.read_metrics(run_dir) and time.perf_counter() - start < TIMEOUT_S:
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    jobs.stop_job(run_id, runs_dir)
    # The header imports TensorFlow in this process, so only after the timing: the job is another process, and
    # what it used is in its run's config.json.
    from cifar_core.device import resolve_precision

    precision = runs.read_config(run_dir).get("precision") or resolve_precision(preset.train.precision)
    machine.print_figures(precision, {"preset": args.preset, "data": args.data, "warm": args.warm,
                                      "seconds_to_first_point": round(seconds, 2)})


if __name__ == "__main__":
    main()
