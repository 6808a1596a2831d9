"""Named starting points: the student report's two models, the project's fast CPU design, and a tiny demo net.

Each preset is a ModelSpec plus the TrainConfig it is meant to be trained with.
"""

from __future__ import annotations

from dataclasses import dataclass

from .spec import (BatchNormalization, Conv2D, Dense, Dropout, Flatten, GlobalMaxPooling2D, MaxPooling2D,
                   ModelSpec)
from .train import TrainConfig


@dataclass(frozen=True)
class Preset:
    spec: ModelSpec
    train: TrainConfig
    why: str


def _conv_block(filters: int) -> tuple:
    # airbench's block: conv -> pool -> BN -> conv -> BN, GELU inside the convs, no conv bias (BN has one).
    # BN momentum 0.9, not Keras's 0.99: with a few hundred steps in all, 0.99 leaves the moving statistics
    # far from the data (measured: validation loss 32,168 after one 40-step epoch with 0.99).
    conv = Conv2D(filters, 3, padding="same", activation="gelu", use_bias=False)
    return (conv, MaxPooling2D(2), BatchNormalization(0.9), conv, BatchNormalization(0.9))


REPORT_2_1 = ModelSpec("report-2-1", (
    # The report names only the layer counts (five 3x3 convolutions, two max-pooling layers, a dense head);
    # the widths follow the TensorFlow CNN tutorial the course used.
    Conv2D(32, 3, padding="valid"), Conv2D(32, 3, padding="valid"), MaxPooling2D(2),
    Conv2D(64, 3, padding="valid"), Conv2D(64, 3, padding="valid"), MaxPooling2D(2),
    Conv2D(64, 3, padding="valid"),
    Flatten(), Dense(64, activation="relu"), Dropout(0.5),
))

REPORT_2_2 = ModelSpec("report-2-2", (
    Conv2D(128, 3, padding="same"), BatchNormalization(),
    Conv2D(256, 3, padding="same"), BatchNormalization(),
    MaxPooling2D(3, padding="same"), BatchNormalization(),  # 32x32 -> 11x11
    Conv2D(512, 4, padding="same"), BatchNormalization(),
    Conv2D(1024, 5, padding="valid"), BatchNormalization(),  # 11x11 -> 7x7
    MaxPooling2D(7, padding="valid"), BatchNormalization(),  # 7x7 -> 1x1
    Flatten(), Dense(60, activation="sigmoid"), Dropout(0.001),
))

FAST = ModelSpec("fast", (
    # airbench's widths (64/256/256) train at 330 images/s on this 2-core CPU; these at about 500 (measured
    # 2026-11-29, bfloat16, batch 256), which buys more epochs per minute.
    Conv2D(24, 3, padding="same", activation="gelu", use_bias=False), BatchNormalization(0.9),
    *_conv_block(48), *_conv_block(96), *_conv_block(192),
    GlobalMaxPooling2D(),
))

TINY = ModelSpec("tiny", (
    Conv2D(16, 3, padding="same"), MaxPooling2D(2),
    Conv2D(32, 3, padding="same"), MaxPooling2D(2),
    GlobalMaxPooling2D(),
))

PRESETS = {
    "report-2-1": Preset(REPORT_2_1, TrainConfig(epochs=5, batch_size=32, optimizer="adam", learning_rate=1e-3,
                                                 flip=False, translate=0),
                         "The report's first model (66.6% test accuracy after 5 epochs of Adam, about 50 s on a "
                         "GTX 1660 Super): the baseline every student starts from."),
    "report-2-2": Preset(REPORT_2_2, TrainConfig(epochs=5, batch_size=32, optimizer="adam", learning_rate=1e-3,
                                                 flip=False, translate=0),
                         "The report's final model, rebuilt from its summary table: 15.6 M parameters, 81.1% test "
                         "accuracy after 9 minutes on a GPU; big and slow on a CPU, shown for comparison."),
    "fast": Preset(FAST, TrainConfig(epochs=12, batch_size=256, optimizer="sgd", learning_rate=0.2,
                                     schedule="one-cycle", warmup_epochs=0.5, weight_decay=5e-4,
                                     label_smoothing=0.2, flip=True, translate=2),
                   "The project's CPU design after airbench: conv-pool-BN blocks with GELU, Nesterov SGD, "
                   "label smoothing, flip and 2-pixel translation; the best accuracy per minute we measured."),
    "tiny": Preset(TINY, TrainConfig(epochs=1, batch_size=64, optimizer="adam", learning_rate=3e-3, translate=0),
                   "Two small convolutions: trains an epoch on 2,000 images in seconds, for demos and tests."),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return PRESETS[name]
