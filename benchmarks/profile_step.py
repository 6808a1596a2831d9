"""Where a training step's time goes: a few steps of a preset's training, as its training runs them, under
TensorFlow's profiler, summed by kind of operation (forward convolution, the two convolution gradients,
BatchNormalization, elementwise work, matrix products, pooling) and by operation. Prints the machine header and the
figures; the shares are of the time the compute threads were busy, summed over threads.

    python benchmarks/profile_step.py --preset fast [--batch-size 1000] [--steps 3] [--precision auto]
"""

import argparse
import collections
import dataclasses
import glob
import tempfile

import machine

from cifar_core.presets import PRESETS, get_preset

KINDS = (  # (kind, what an operation's name or type contains), the first match wins
    ("kernel gradient (Conv2DBackpropFilter)", "BackpropFilter"),
    ("input gradient (Conv2DBackpropInput)", "BackpropInput"),
    ("forward convolution", "Conv2D"),
    ("BatchNormalization", "BatchNorm"),
    ("pooling", "Pool"),
    ("matrix products (head, Muon, nine taps)", "MatMul"),
    ("elementwise (GELU, optimizer, casts)", ""),
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="fast", choices=sorted(PRESETS))
    parser.add_argument("--batch-size", type=int, default=0, help="images per step (0: the preset's)")
    parser.add_argument("--steps", type=int, default=3, help="steps profiled, after three untimed ones")
    parser.add_argument("--precision", default="auto", help="auto, float32, mixed_bfloat16 or mixed_float16")
    return parser.parse_args()


def operation_times(logdir: str) -> collections.Counter:
    """Milliseconds per operation name, summed over the compute threads, from the profiler's XSpace file."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))[-1], "rb") as f:
        space.ParseFromString(f.read())
    times = collections.Counter()
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if ":" in name and not name.startswith("ExecutorState"):  # "scope/op:Type", not the executor's span
                    times[name] += event.duration_ps / 1e9
    return times


def main():
    args = parse_args()
    import tensorflow as tf

    from cifar_core.device import resolve_precision
    from cifar_core.train import make_dataset

    preset = get_preset(args.preset)
    config = dataclasses.replace(preset.train, batch_size=args.batch_size or preset.train.batch_size)
    precision = resolve_precision(args.precision)
    x, y = machine.synthetic_images(4 * config.batch_size)
    model = machine.compiled_preset(dataclasses.replace(preset, train=config), precision, x, 4)
    dataset = make_dataset(x, y, 10, config.batch_size, training=True, config=config).repeat()
    model.fit(dataset, epochs=1, steps_per_epoch=3, verbose=0)  # tracing and first calls stay out
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        clock = machine.step_clock()
        model.fit(dataset, epochs=1, steps_per_epoch=args.steps + 1, verbose=0, callbacks=[clock])
        tf.profiler.experimental.stop()
        times = operation_times(logdir)
    total = sum(times.values())
    kinds = collections.Counter()
    for name, ms in times.items():
        kinds[next(kind for kind, key in KINDS if key in name)] += ms
    per_step = args.steps + 1
    machine.print_figures(precision, {
        "preset": args.preset, "batch_size": config.batch_size, "precision": precision, "steps": per_step,
        "step_s": round((clock.stamps[-1] - clock.stamps[0]) / args.steps, 3),
        "busy_thread_s_per_step": round(total / 1e3 / per_step, 3),
        "shares": {kind: round(ms / total, 3) for kind, ms in kinds.most_common()},
        "top_operations_ms_per_step": {name: round(ms / per_step, 1) for name, ms in times.most_common(12)}})


if __name__ == "__main__":
    main()
