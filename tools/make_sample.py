"""Builds cifar_core/assets/sample.npz: 2,000 training and 1,000 test images (200 and 100 a class), all from the
validation split of an image folder (the last 10% of readers.list_folder's interleaved order: for
/work/shared/datasets/cifar10-jpeg, the 5,000 images the shipped default model never trained on).

The images are the folder's own JPEG files, stored byte for byte (no second lossy encoding). data.load_data("sample")
holds out the last 10% of the 2,000 as its validation split and offers the 1,000 as its test split.
Usage: python tools/make_sample.py ../shared/datasets/cifar10-jpeg
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's cifar_core
from cifar_core import data, readers  # noqa: E402

TRAIN_PER_CLASS, TEST_PER_CLASS = 200, 100

root = Path(sys.argv[1]) / "train"
classes, listing = readers.list_folder(root)
held_out = listing[-round(len(listing) * data.FOLDER_VAL_FRACTION):]
train, test = [], []
for label in range(len(classes)):
    of_class = [f for f in held_out if f[1] == label]
    train += of_class[:TRAIN_PER_CLASS]
    test += of_class[TRAIN_PER_CLASS:TRAIN_PER_CLASS + TEST_PER_CLASS]
order = {f: n for n, f in enumerate(held_out)}
chosen = sorted(train, key=order.get) + sorted(test, key=order.get)  # interleaved classes, as in the folder
blobs = [Path(path).read_bytes() for path, _ in chosen]
offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
np.savez(data.SAMPLE_PATH, jpeg=np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets=offsets,
         y=np.array([label for _, label in chosen], dtype=np.int64), class_names=np.array(classes),
         test_count=np.array(len(test), dtype=np.int64),
         files=np.array([str(Path(p).relative_to(root)) for p, _ in chosen]))
print(data.SAMPLE_PATH, data.SAMPLE_PATH.stat().st_size, "bytes,", len(train), "training and", len(test),
      "test images")
