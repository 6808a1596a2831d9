"""Training throughput: the project's loop (tf.data, batched augmentation, precision policy, and the preset's
lookahead) against plain float32 `model.fit` on NumPy arrays, for the same model, alternated in one process so all
see the same machine state. Prints each round's images/s, then the machine header and the medians, of whole rounds
and of each round's steady state (from the end of its first step).

Two plain loops: the same model as the project builds it (its own Conv2D, BatchNormalization and Activation layers,
whose training passes are faster), and the same network in Keras's own layer classes, as a user's script would
write it (`stock_keras_float32_fit`; the whitening layer, which Keras does not have, stays the project's).

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
    stock = stock_keras(plain, preset, args.images // config.batch_size)
    x_float, y_onehot = x.astype("float32"), keras.utils.to_categorical(y, 10)
    extras = [make_lookahead(args.rounds * args.images // config.batch_size)] if config.lookahead else []
    # One short fit each first, so that tracing and oneDNN's first-call set-up stay out of the timed rounds.
    ours.fit(dataset.take(3), verbose=0)
    warm = 3 * config.batch_size
    plain.fit(x_float[:warm], y_onehot[:warm], batch_size=config.batch_size, verbose=0)
    stock.fit(x_float[:warm], y_onehot[:warm], batch_size=config.batch_size, verbose=0)

    figures = machine.alternate({
        "project": lambda: machine.fit_stamps(ours, dataset, callbacks=extras),
        "plain_float32_fit": lambda: machine.fit_stamps(plain, x_float, y_onehot, batch_size=config.batch_size),
        "stock_keras_float32_fit": lambda: machine.fit_stamps(stock, x_float, y_onehot, batch_size=config.batch_size),
    }, args.rounds, args.images, config.batch_size)
    figures["steady_ratio_to_stock_keras"] = round(figures["steady_images_per_s"]["project"]
                                                   / figures["steady_images_per_s"]["stock_keras_float32_fit"], 3)
    machine.print_figures(precision, {"preset": args.preset, "precision": precision, "images": args.images,
                                      "rounds": args.rounds, **figures})


def stock_keras(model, preset, steps_per_epoch: int):
    """A float32 copy of the model with Keras's own Conv2D, BatchNormalization and Activation in place of the
    project's (the same configuration, so the same network and weights' shapes), compiled as the model is."""
    import keras

    from cifar_core import layers
    from cifar_core.train import make_optimizer

    stock_classes = {layers.Conv2D: keras.layers.Conv2D, layers.BatchNormalization: keras.layers.BatchNormalization,
                     layers.Activation: keras.layers.Activation}

    def clone(layer):
        return stock_classes.get(type(layer), type(layer)).from_config(layer.get_config())

    stock = keras.models.clone_model(model, clone_function=clone)
    stock.set_weights(model.get_weights())
    assert not any(type(layer) in stock_classes for layer in stock.layers)
    stock.compile(optimizer=make_optimizer(preset.train, steps_per_epoch),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=preset.train.label_smoothing))
    return stock


if __name__ == "__main__":
    main()
