"""Latency: one uploaded image through predict (warm model), and evaluating a whole split; medians of repeats.
With a model trained for test-time augmentation, both are timed with it (as the app runs them) and without. Prints
the machine header, then one JSON line of figures.

    python benchmarks/latency.py [--model default] [--data sample] [--repeats 50] [--eval-images 10000]
"""

import argparse
import io
import statistics
import time

import machine


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="'default', a run id, a run directory or a .keras file")
    parser.add_argument("--data", default="sample", help="the data source whose validation split is evaluated")
    parser.add_argument("--repeats", type=int, default=50, help="timed predictions of the one image")
    parser.add_argument("--eval-images", type=int, default=10_000,
                        help="images evaluated, the validation split repeated to this many")
    return parser.parse_args()


def main():
    args = parse_args()
    # TensorFlow only now, so that --help answers at once.
    import numpy as np
    from PIL import Image

    from cifar_core import data, models
    from cifar_core.evaluate import evaluate_arrays
    from cifar_core.predict import classify

    model_path, run_dir = models.resolve_model(args.model)
    model = models.load_model(model_path)
    names = models.class_names_for(run_dir, model.output_shape[-1])
    photo = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(photo, "JPEG")
    upload = [("photo.jpg", photo.getvalue())]
    tta = models.tta_for(run_dir)
    modes = [tta, "off"] if tta != "off" else ["off"]
    result = {"model": args.model, "tta": tta}
    for mode in modes:
        classify(model, names, upload, tta=mode)  # untimed: builds the serving copy and traces its predict
        single = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            classify(model, names, upload, tta=mode)
            single.append((time.perf_counter() - start) * 1000)
        key = f"predict_one_640x480_jpeg_ms_median{'_tta' if mode != 'off' else ''}"
        result[key] = round(statistics.median(single), 2)

    dataset = data.load_data(args.data)
    x, y, split = dataset.split("val")
    repeat = -(-args.eval_images // len(x))
    x, y = np.concatenate([x] * repeat)[: args.eval_images], np.concatenate([y] * repeat)[: args.eval_images]
    result.update(evaluate_data=dataset.source, evaluate_split=split, evaluate_images=len(x))
    for mode in modes:
        full = []
        for _ in range(3):
            start = time.perf_counter()
            evaluate_arrays(model, x, y, dataset.class_names, split, tta=mode)
            full.append(time.perf_counter() - start)
        result[f"evaluate_s_median{'_tta' if mode != 'off' else ''}"] = round(statistics.median(full), 2)
    # Predictions run the serving copy, whose layers compute in its policy (the output head stays float32).
    machine.print_figures(models.serving_model(model).layers[0].dtype_policy.name, result)


if __name__ == "__main__":
    main()
