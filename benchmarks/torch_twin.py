"""The `fast` (or `fast-small`) network written directly in PyTorch, trained side by side with the project's own
loop in one process, rounds alternated, so that both see the same machine state. Prints each round's images/s, then
the machine header and the medians, of whole rounds and of each round's steady state (from the end of its first
step).

    pip install torch==2.13.0   # optional: a benchmark dependency only, never needed by the product
    python benchmarks/torch_twin.py --preset fast [--images 4096] [--rounds 3] [--precision float32]

The twin is the same network: a fixed 2x2 patch-whitening convolution (2 x 3 x 4 = 24 channels), GELU, three
blocks of conv -> max-pool -> BatchNorm (no scale) -> GELU -> conv -> BatchNorm -> GELU, a 3x3 max-pool (on 32-pixel
images the same function as fast-small's global one; the twin trains at full size only) and the output layer scaled
by the spec's logit scale; channels-last, float32, as many threads as TensorFlow uses, one Nesterov SGD step per
batch with label smoothing. Its input pipeline is a tensor already in memory, so the comparison is of the training
steps themselves.
"""

import argparse
import os
import time

import machine

from cifar_core.presets import get_preset


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="fast", choices=("fast", "fast-small"))
    parser.add_argument("--images", type=int, default=4096, help="synthetic training images per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of one epoch of each")
    parser.add_argument("--precision", default="float32", help="the project loop's precision (auto, float32, ...)")
    return parser.parse_args()


def torch_twin(widths, batch_size: int, logit_scale: float, threads: int):
    import torch
    from torch import nn

    torch.set_num_threads(threads)

    def block(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(c_out), nn.GELU(),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.GELU()]

    whitening = nn.Conv2d(3, 24, 2)
    whitening.requires_grad_(False)
    layers, c_in = [whitening, nn.GELU()], 24
    for width in widths:
        layers += block(c_in, width)
        c_in = width
    layers += [nn.MaxPool2d(3), nn.Flatten(), nn.Linear(c_in, 10, bias=False)]
    model = nn.Sequential(*layers).to(memory_format=torch.channels_last)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.requires_grad_(False)  # airbench's BatchNorm has no scale
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.85,
                                nesterov=True, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.2)

    def epoch(x, y, stamps):
        model.train()
        for start in range(0, len(x), batch_size):
            logits = model(x[start:start + batch_size]) * logit_scale
            loss = loss_fn(logits, y[start:start + batch_size])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            stamps.append(time.perf_counter())

    return epoch


def main():
    args = parse_args()
    import tensorflow as tf
    import torch

    from cifar_core.device import resolve_precision
    from cifar_core.train import make_dataset

    preset = get_preset(args.preset)
    config = preset.train
    precision = resolve_precision(args.precision)
    x, y = machine.synthetic_images(args.images)
    ours = machine.compiled_preset(preset, precision, x, args.images // config.batch_size)
    dataset = make_dataset(x, y, 10, config.batch_size, training=True, config=config)
    widths = [layer.filters for layer in preset.spec.layers if type(layer).__name__ == "Conv2D"][::2]
    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    twin = torch_twin(widths, config.batch_size, preset.spec.logit_scale, threads)
    x_torch = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255).contiguous(memory_format=torch.channels_last)
    y_torch = torch.from_numpy(y).long()

    ours.fit(dataset.take(2), verbose=0)  # tracing and oneDNN's first-call set-up stay out of the timed rounds
    twin(x_torch[:2 * config.batch_size], y_torch[:2 * config.batch_size], [])

    def twin_stamps():
        stamps = []
        twin(x_torch, y_torch, stamps)
        return stamps

    figures = machine.alternate({"project": lambda: machine.fit_stamps(ours, dataset), "pytorch_twin": twin_stamps},
                                args.rounds, args.images, config.batch_size)
    machine.print_figures(precision, {
        "preset": args.preset, "precision": precision, "images": args.images, "rounds": args.rounds,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), **figures})

if __name__ == "__main__":
    main()
