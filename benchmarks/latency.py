"""Latency: one uploaded image through predict (warm model), and evaluating a whole split; medians of repeats.
With a model trained for test-time augmentation, both are timed with it (as the app runs them) and without.

    python benchmarks/latency.py [--model default] [--data sample] [--repeats 50]
"""

import argparse
import io
import json
import statistics
import time

import numpy as np
from PIL import Image

from cifar_core import data, runs
from cifar_core.evaluate import evaluate_arrays
from cifar_core.predict import classify, load_model

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="default")
parser.add_argument("--data", default="sample")
parser.add_argument("--repeats", type=int, default=50)
parser.add_argument("--eval-images", type=int, default=10_000)
args = parser.parse_args()

model_path, run_dir = runs.resolve_model(args.model)
model = load_model(model_path)
names = runs.class_names_for(run_dir, model.output_shape[-1])
photo = io.BytesIO()
Image.fromarray(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(photo, "JPEG")
upload = [("photo.jpg", photo.getvalue())]
tta = runs.tta_for(run_dir)
result = {"model": args.model, "tta": tta}
for mode in ([True, False] if tta else [False]):
    classify(model, names, upload, tta=mode)
    single = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        classify(model, names, upload, tta=mode)
        single.append((time.perf_counter() - start) * 1000)
    result[f"predict_one_640x480_jpeg_ms_median{'_tta' if mode else ''}"] = round(statistics.median(single), 2)

dataset = data.load_data(args.data)
x, y, split = dataset.split("val")
repeat = -(-args.eval_images // len(x))
x, y = np.concatenate([x] * repeat)[: args.eval_images], np.concatenate([y] * repeat)[: args.eval_images]
result["evaluate_images"] = len(x)
for mode in ([True, False] if tta else [False]):
    full = []
    for _ in range(3):
        start = time.perf_counter()
        evaluate_arrays(model, x, y, dataset.class_names, split, tta=mode)
        full.append(time.perf_counter() - start)
    result[f"evaluate_s_median{'_tta' if mode else ''}"] = round(statistics.median(full), 2)
print(json.dumps(result))
