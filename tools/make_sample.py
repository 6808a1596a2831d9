"""Builds cifar_core/assets/sample.npz: 2,000 images (200 a class) from the validation split of an image folder.

The images are the folder's own JPEG files, stored byte for byte (no second lossy encoding), which keeps the
sample at about 2.5 MB. Usage: python tools/make_sample.py ../shared/datasets/cifar10-jpeg
"""

import sys
from pathlib import Path

import numpy as np

from cifar_core import data

PER_CLASS = 200

root = Path(sys.argv[1]) / "train"
classes, files = data._list_folder(root)
val_files = files[-round(len(files) * data.FOLDER_VAL_FRACTION):]
chosen = []
for label in range(len(classes)):
    chosen += [f for f in val_files if f[1] == label][:PER_CLASS]
chosen.sort(key=lambda f: (val_files.index(f)))
blobs = [Path(path).read_bytes() for path, _ in chosen]
offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
np.savez(data.SAMPLE_PATH, jpeg=np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets=offsets,
         y=np.array([label for _, label in chosen], dtype=np.int64), class_names=np.array(classes),
         files=np.array([str(Path(p).relative_to(root)) for p, _ in chosen]))
print(data.SAMPLE_PATH, data.SAMPLE_PATH.stat().st_size, "bytes,", len(chosen), "images")
