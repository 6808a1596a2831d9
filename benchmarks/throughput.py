"""Training throughput: the project's loop (tf.data, batched augmentation, precision policy, and the preset's
lookahead) against plain float32 `model.fit` on NumPy arrays, for the same model, alternated in one process so both
see the same machine state. Prints each round's images/s, then the machine header and the medians, of whole rounds
and of each round's steady state (from the end of its first step).

    python benchmarks/throughput.py --preset fast [--images 8192] [--rounds 3]
"""

import argparse

import machine

from cifar_core.presets import PRESETS, get_preset


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="fast", choices=sorted(PRESETS))
    parser.add_argument("--images", type=int, default=8192, help="synthetic training images per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of one epoch of each loop")
    return parser.parse_args()


def main():
    args = parse_args()
    # TensorFlow only now, so that --help answers at once.
    import keras

    from cifar_core.callbacks import make_lookahead
    from cifar_core.device import resolve_precision
    from cifar_core.train import make_dataset

    preset = get_preset(args.preset)
    config = preset.train
    precision = resolve_precision(config.precision)
    x, y = machine.synthetic_images(args.images)

    def compiled(policy):
        return machine.compiled_preset(preset, policy, x, args.images // config.batch_size)

    ours = compiled(precision)
    dataset = make_dataset(x, y, 10, config.batch_size, training=True, config=config)
    plain = compiled("float32")
    x_float, y_onehot = x.astype("float32"), keras.utils.to_categorical(y, 10)
    extras = [make_lookahead(args.rounds * args.images // config.batch_size)] if config.lookahead else []
    # One short fit each first, so that tracing and oneDNN's first-call set-up stay out of the timed rounds.
    ours.fit(dataset.take(3), verbose=0)
    warm = 3 * config.batch_size
    plain.fit(x_float[:warm], y_onehot[:warm], batch_size=config.batch_size, verbose=0)

    figures = machine.alternate({
        "project": lambda: machine.fit_stamps(ours, dataset, callbacks=extras),
        "plain_float32_fit": lambda: machine.fit_stamps(plain, x_float, y_onehot, batch_size=config.batch_size),
    }, args.rounds, args.images, config.batch_size)
    machine.print_figures(precision, {"preset": args.preset, "precision": precision, "images": args.images,
                                      "rounds": args.rounds, **figures})


if __name__ == "__main__":
    main()
