"""CIFAR-10 (or any folder of labelled images) as uint8 NumPy arrays, with a fixed validation split.

Sources, chosen by `--data SOURCE` or the CIFAR10_DATA environment variable:
  keras                      keras.datasets.cifar10.load_data() (downloads once; the default when downloaded or
                             when it can be; else the sample, see resolve_default_source)
  sample                     the small embedded sample shipped in this package (no download), with a test split
  path/cifar-10-batches-py   the official Python pickles, unpacked
  path/cifar-10-python.tar.gz  the official archive, read in place
  path/to/folder             root/train/<class>/*.{png,jpg,...} and optionally root/test/<class>/*
Images are (N, 32, 32, 3) uint8 in [0, 255]; labels are (N,) int64. The validation split is the last 5,000
training images for CIFAR-10 and the last 10% for a folder, the same on every load. This module chooses the
source, holds out the splits and keeps the embedded sample; readers.py reads the file formats.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import files, readers
from .images import to_input_array
from .readers import DataError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_VAL_SIZE = 5_000
FOLDER_VAL_FRACTION = 0.1
SAMPLE_PATH = Path(__file__).parent / "assets" / "sample.npz"


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    class_names: tuple
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray, str]:
        """(x, y, split actually used). 'test' falls back to 'val' when the source has no test images, and the
        returned name says so; training images are never reported as test images."""
        if name == "test" and self.x_test is not None:
            return self.x_test, self.y_test, "test"
        if name in ("test", "val"):
            return self.x_val, self.y_val, "val"
        if name == "train":
            return self.x_train, self.y_train, "train"
        raise DataError(f"split must be 'test', 'val' or 'train', got {name!r}.")


KERAS_HOST = ("www.cs.toronto.edu", 443)  # where keras.datasets.cifar10 downloads CIFAR-10 from
PROBE_SECONDS = 2.0
PROBE_CACHE_SECONDS = 60.0
_probe: dict = {}


def keras_downloaded() -> Path | None:
    """The folder where Keras keeps CIFAR-10, when it has been downloaded."""
    return next((d for d in keras_cifar_dirs() if (d / "data_batch_1").exists()), None)


def can_download() -> bool:
    """Whether CIFAR-10's download server answers within PROBE_SECONDS; asked at most once a minute."""
    if time.monotonic() - _probe.get("at", -1e9) > PROBE_CACHE_SECONDS:
        try:
            socket.create_connection(KERAS_HOST, timeout=PROBE_SECONDS).close()
            _probe["ok"] = True
        except OSError:
            _probe["ok"] = False
        _probe["at"] = time.monotonic()
    return _probe["ok"]


def keras_available() -> bool:
    return keras_downloaded() is not None or can_download()


FALLBACK_NOTE = ("CIFAR-10 is not downloaded and cannot be downloaded here (no network), so the embedded sample "
                 "is used: {train:,} training and {test:,} test images.")


def resolve_default_source() -> tuple[str, str | None]:
    """(the source used when none is named, a sentence when that is a fallback). CIFAR10_DATA when set; else
    CIFAR-10 from Keras when it is downloaded or can be; else the embedded sample, and the sentence says so."""
    if os.environ.get("CIFAR10_DATA"):
        return os.environ["CIFAR10_DATA"], None
    if keras_available():
        return "keras", None
    counts = sample_counts()
    return "sample", FALLBACK_NOTE.format(train=counts["train"], test=counts["test"])


def default_source() -> str:
    return resolve_default_source()[0]


def keras_cifar_dirs() -> list[Path]:
    """Where keras.datasets.cifar10 keeps CIFAR-10 once downloaded: Keras 3 extracts into
    datasets/cifar-10-batches-py-target/cifar-10-batches-py, older Keras into datasets/cifar-10-batches-py, under
    KERAS_HOME (default ~/.keras, or /tmp/.keras when that is not writable)."""
    homes = [Path(os.environ["KERAS_HOME"])] if os.environ.get("KERAS_HOME") else []
    homes += [Path.home() / ".keras", Path("/tmp/.keras")]
    return [home / "datasets" / sub for home in homes
            for sub in ("cifar-10-batches-py-target/cifar-10-batches-py", "cifar-10-batches-py")]


def download_keras() -> None:
    """Downloads CIFAR-10 through keras.datasets (about 170 MB, once); a DataError when that fails."""
    _load_keras()


def train_images_hint(source: str | None = None, limit: int | None = None) -> int | None:
    """How many training images a source yields after the validation hold-out, without decoding it (an image folder
    is listed, once per version of it); None when that cannot be known: the Train page's estimate had counted a
    folder of 20 images as the 50,000 of its Limit box."""
    source = source or default_source()
    if source == "sample":
        count = sample_counts()["train"] - sample_counts()["val"]
    elif source == "keras" or source.endswith((".tar.gz", ".tgz")) or (Path(source) / "data_batch_1").exists():
        count = 50_000 - CIFAR10_VAL_SIZE
    else:
        count = _folder_train_images(source, source_version(source))
    if limit is not None:
        return min(limit, count) if count is not None else limit
    return count


@functools.lru_cache(maxsize=16)
def _folder_train_images(source: str, version: str) -> int | None:
    root = files.user_path(source)
    try:
        _, listing = readers.list_folder(root / "train" if (root / "train").is_dir() else root, within=root)
    except (DataError, OSError):
        return None
    return len(listing) - max(1, round(len(listing) * FOLDER_VAL_FRACTION))


# Entries looked at for a source's version: a dataset's own folder and its split folders hold a few dozen.
MAX_VERSION_ENTRIES = 2_000


def source_version(source: str | None) -> str:
    """A cheap token that changes when a data source's files do: the modification times and sizes of its folder,
    its entries and their sub-folders (adding or removing an image changes its class folder's time), or of its
    archive. What a page's cached dataset and evaluation are keyed by: Evaluate had shown a folder's old figures,
    after images were added to it, for as long as the server ran (the seventh attack)."""
    source = source or default_source()
    if source in ("keras", "sample"):
        return source
    tokens, looked = [], 0
    try:
        # links followed (a data root may offer a dataset through one), to a depth of 2, which also ends a loop
        pending = [(files.resolved(source), 0)]
        while pending and looked < MAX_VERSION_ENTRIES:
            path, depth = pending.pop()
            stat = os.stat(path)
            tokens.append((str(path), stat.st_mtime_ns, stat.st_size))
            looked += 1
            if depth < 2 and os.path.isdir(path):
                with os.scandir(path) as entries:
                    children = [e.path for e in itertools.islice(entries, MAX_VERSION_ENTRIES)
                                if depth == 0 or e.is_dir()]
                pending.extend((child, depth + 1) for child in sorted(children))
    except (OSError, ValueError):
        tokens.append(("unreadable", looked))
    return hashlib.sha256(repr(tokens).encode("utf-8", "backslashreplace")).hexdigest()[:16]


def cache_dir() -> Path:
    return Path(os.environ.get("CIFAR_CORE_CACHE") or Path.home() / ".cache" / "cifar_core")


def _hold_out(x: np.ndarray, y: np.ndarray, val_size: int):
    return x[:-val_size], y[:-val_size], x[-val_size:], y[-val_size:]


def _not_downloaded(reason: str) -> str:
    return (f"CIFAR-10 could not be downloaded ({reason}); use a local copy (a cifar-10-batches-py folder, the "
            "cifar-10-python.tar.gz archive or an image folder) or the embedded sample instead.")


def check_source(source: str | None = None) -> str:
    """The source named (the default when None), checked without loading it: DataError for a path that does not
    exist or is neither a folder nor a .tar.gz file, or CIFAR-10 from Keras neither downloaded nor downloadable.
    A queued run is checked so before it waits; load_data checks a path so before it reads it."""
    named, source = source, source or default_source()
    if source == "keras" and not keras_downloaded() and not can_download():
        raise DataError(_not_downloaded("no network connection"))
    if source in ("keras", "sample"):
        return source
    path = files.user_path(source)
    if not path.exists():
        where = " (set by CIFAR10_DATA)" if not named else ""
        raise DataError(f"The data source {source!r}{where} does not exist; give 'keras', 'sample', a "
                        "cifar-10-batches-py folder, the cifar-10-python.tar.gz archive, or an image folder.")
    if not (path.is_dir() or path.is_file() and path.name.endswith((".tar.gz", ".tgz"))):
        raise DataError(f"{source!r} is neither a cifar-10-batches-py folder, the cifar-10-python.tar.gz archive, "
                        "nor an image folder with train/<class>/ inside.")
    return source


def load_data(source: str | None = None, *, limit: int | None = None, log=None) -> Dataset:
    """Loads a source and splits it. `limit` keeps the first N training images (for quick tries); the
    validation and test splits stay whole so that accuracies remain comparable."""
    named, source = source, source or default_source()
    if source == "keras":
        (x_train, y_train), test, names = _load_keras()
        val_size = CIFAR10_VAL_SIZE
    elif source == "sample":
        x, y, names = load_sample()
        cut = sample_counts()["train"]
        (x_train, y_train), test = (x[:cut], y[:cut]), ((x[cut:], y[cut:]) if cut < len(x) else None)
        val_size = sample_counts()["val"]
    else:
        path = files.user_path(check_source(named))  # a folder, or a .tar.gz file
        if path.is_file():
            (x_train, y_train), test = readers.load_archive(path)
            names, val_size = CIFAR10_CLASSES, CIFAR10_VAL_SIZE
        elif (path / "data_batch_1").exists():
            (x_train, y_train), test = readers.load_batches(path)
            names, val_size = CIFAR10_CLASSES, CIFAR10_VAL_SIZE
        else:
            (x_train, y_train), test, names = readers.load_folder(path, cache_dir(), log)
            val_size = max(1, round(len(x_train) * FOLDER_VAL_FRACTION))
    if len(x_train) <= val_size:
        raise DataError(f"The source {source!r} has only {len(x_train)} training images; at least "
                        f"{val_size + 1} are needed to hold out a validation split.")
    x_train, y_train, x_val, y_val = _hold_out(x_train, y_train, val_size)
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
    x_test, y_test = test if test is not None else (None, None)
    return Dataset(x_train, y_train, x_val, y_val, x_test, y_test, tuple(names), source)


def _load_keras():
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as e:  # any network, HTTP or archive failure: the user needs the same one sentence
        reason = "no network connection" if not can_download() else (str(e).split("\n")[0][:120] or type(e).__name__)
        raise DataError(_not_downloaded(reason)) from None
    return (x_train, y_train.reshape(-1).astype(np.int64)), (x_test, y_test.reshape(-1).astype(np.int64)), \
        CIFAR10_CLASSES


@functools.lru_cache(maxsize=1)
def sample_counts() -> dict[str, int]:
    """How many of the sample's images load_data("sample") gives each split: the last test_count images are its
    test split, and the last 10% of the rest its validation split."""
    with np.load(SAMPLE_PATH) as saved:
        total = len(saved["y"])
        test = int(saved["test_count"]) if "test_count" in saved.files else 0
    val = max(1, round((total - test) * FOLDER_VAL_FRACTION))
    return {"total": total, "train": total - test, "val": val, "test": test}


@functools.lru_cache(maxsize=1)
def load_sample() -> tuple[np.ndarray, np.ndarray, tuple]:
    """The embedded sample: 3,000 CIFAR-10 images the shipped model never trained on (its validation split), the
    first 2,000 for training and the last 1,000 as a test split (sample_counts), stored as their original JPEG
    bytes (see tools/make_sample.py)."""
    with np.load(SAMPLE_PATH) as saved:
        blob, offsets = saved["jpeg"].tobytes(), saved["offsets"]
        x = np.stack([to_input_array(blob[a:b]) for a, b in zip(offsets[:-1], offsets[1:])])
        return x, saved["y"].astype(np.int64), tuple(str(n) for n in saved["class_names"])
