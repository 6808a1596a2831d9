"""Latency: one uploaded image through predict (warm model), and evaluating a whole split; medians of repeats.

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
classify(model, names, upload)
single = []
for _ in range(args.repeats):
    start = time.perf_counter()
    classify(model, names, upload)
    single.append((time.perf_counter() - start) * 1000)

dataset = data.load_data(args.data)
x, y, split = dataset.split("val")
repeat = -(-args.eval_images // len(x))
x, y = np.concatenate([x] * repeat)[: args.eval_images], np.concatenate([y] * repeat)[: args.eval_images]
full = []
for _ in range(3):
    start = time.perf_counter()
    evaluate_arrays(model, x, y, dataset.class_names, split)
    full.append(time.perf_counter() - start)
print(json.dumps({"model": args.model, "predict_one_640x480_jpeg_ms_median": round(statistics.median(single), 2),
                  "evaluate_images": len(x), "evaluate_s_median": round(statistics.median(full), 2)}))
