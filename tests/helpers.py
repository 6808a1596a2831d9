"""Shared helpers of the cifar_core tests (test_spec ... test_cli): image bytes, a made-up image folder and CIFAR-10
batch files, the CLI in a subprocess, one tiny trained run shared by the whole session, and specs of every layer
type with their Keras models built once.

pytest puts tests/ on sys.path (pyproject.toml's pythonpath), so the tests `import helpers`.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cifar_core import spec as S
from cifar_core import spec_io

ROOT = Path(__file__).resolve().parent.parent


def plain(markdown: str) -> str:
    """Markdown text as shown (the pages escape user-given names and their messages)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def image_bytes(image, format: str = "PNG", **save_args) -> bytes:
    """A PIL image or a uint8 array encoded as a file in memory."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format=format, **save_args)
    return buffer.getvalue()


def solid(color, size=(32, 32)) -> np.ndarray:
    """A (height, width, 3) uint8 image of one colour; size is (width, height) like PIL."""
    return np.broadcast_to(np.asarray(color, np.uint8), (size[1], size[0], 3)).copy()


# A made-up image folder and the official CIFAR-10 batch files: test_readers reads them, and test_data loads them too
# for the hold-out and the splits.

CLASSES = ("cat", "dog", "frog")
PER_CLASS = 10


def colour(label: int, index: int, split: str = "train") -> tuple:
    """Every image is one solid colour that says which file it is."""
    return (40 + 80 * label, 5 + 20 * index, 60 if split == "train" else 200)


def make_folder(root, with_test=True):
    """root/train/<class>/img00..img09 (img03 is a JPEG, img05 is 48x40, img07 is 64x64), a stray text file and a
    hidden folder; root/test/<class>/ with 2 images each."""
    for split, count in (("train", PER_CLASS), ("test", 2)):
        if split == "test" and not with_test:
            continue
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                size = {5: (48, 40), 7: (64, 64)}.get(i, (32, 32))
                ext, fmt = ("jpg", "JPEG") if i == 3 else ("png", "PNG")
                (folder / f"img{i:02d}.{ext}").write_bytes(
                    image_bytes(solid(colour(label, i, split), size), fmt, **(
                        {"quality": 95} if fmt == "JPEG" else {})))
            (folder / "notes.txt").write_text("not an image")
    (root / "train" / ".ipynb_checkpoints").mkdir()
    return root


def identify(image: np.ndarray, split: str = "train") -> tuple[int, int]:
    """(label, index) of a decoded solid image, by nearest colour."""
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    spread = np.ptp(image.reshape(-1, 3).astype(int), axis=0).max()
    assert spread <= 4, "a solid image stays solid"
    mean = image.reshape(-1, 3).mean(axis=0)
    candidates = [(label, i) for label in range(len(CLASSES)) for i in range(PER_CLASS)]
    best = min(candidates, key=lambda c: np.abs(mean - colour(*c, split)).sum())
    assert np.abs(mean - colour(*best, split)).max() <= 4
    return best


BATCH = 8  # images per synthetic batch; the real ones hold 10,000


def official_batches(seed=0):
    """Five training batches and a test batch in the official format: a dict with b"data", an (N, 3072) uint8 array
    of the red, then green, then blue 32x32 planes, row by row, and b"labels", a list of ints."""
    from cifar_core import data

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (6 * BATCH, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 6 * BATCH).tolist()
    blobs = {}
    for b, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        part = images[b * BATCH:(b + 1) * BATCH]
        blobs[name] = pickle.dumps({
            b"batch_label": name.encode(), b"labels": labels[b * BATCH:(b + 1) * BATCH],
            b"data": part.transpose(0, 3, 1, 2).reshape(len(part), 3072),
            b"filenames": [f"{name}_{i}.png".encode() for i in range(len(part))]}, protocol=2)
    blobs["batches.meta"] = pickle.dumps({b"label_names": [c.encode() for c in data.CIFAR10_CLASSES]}, protocol=2)
    return images, np.array(labels), blobs


def cli_env(**extra) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", **extra}
    env.pop("CIFAR10_DATA", None)
    return env


def run_cli(*args, timeout: float = 240, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m cifar_core ARGS` from the project root (niceness is inherited from the test process)."""
    return subprocess.run([sys.executable, "-m", "cifar_core", *map(str, args)], cwd=ROOT, env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def start_cli(*args, **popen_args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cifar_core", *map(str, args)], cwd=ROOT, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen_args)


def process_alive(pid: int) -> bool:
    """Whether the process runs (a zombie, which has exited, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(predicate, timeout: float, interval: float = 0.2, process: subprocess.Popen | None = None):
    """Polls predicate() until it returns something truthy; fails the test on timeout or if `process` ends."""
    import pytest

    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the process ended (status {process.returncode}) before the condition held:\n{out}\n{err}")
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout} s")


@contextlib.contextmanager
def keras_process_state():
    """train() sets the global Keras precision policy and a SIGTERM handler: right for its own process, but the test
    process must get them back."""
    import keras

    policy = keras.mixed_precision.global_policy().name
    handler = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(policy)
        signal.signal(signal.SIGTERM, handler)


def train_in_process(spec, config, run_dir, **kwargs):
    from cifar_core.train import train

    messages = []
    with keras_process_state():
        try:
            train(spec, config, Path(run_dir), log=messages.append, **kwargs)
        finally:
            train_in_process.last_log = messages
    return messages


def tiny_config(**changes):
    import dataclasses

    from cifar_core.presets import get_preset

    return dataclasses.replace(get_preset("tiny").train, **{"data": "sample", "limit": 300, "epochs": 1, **changes})


_TMP = []


def scratch_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if not _TMP:
        atexit.register(lambda: [shutil.rmtree(p, ignore_errors=True) for p in _TMP])
    _TMP.append(path)
    return path


_TINY_RUN = {}


def tiny_run() -> Path:
    """One run directory of the `tiny` preset trained for 1 epoch on 300 images of the embedded sample, made once
    per test session and shared: treat it as read-only (copy it to change it)."""
    if "dir" not in _TINY_RUN:
        from cifar_core.presets import get_preset

        run_dir = scratch_dir("cifar-core-tiny-") / "20260101-000000-tiny"
        _TINY_RUN["log"] = train_in_process(get_preset("tiny").spec, tiny_config(), run_dir)
        _TINY_RUN["dir"] = run_dir
    return _TINY_RUN["dir"]


def tiny_run_log() -> list[str]:
    tiny_run()
    return _TINY_RUN["log"]


# Specs that together use every layer type and most options: test_shapes checks their inference against Keras,
# test_spec_io their JSON round trip.
ALL_TYPES = [
    S.ModelSpec("all-a", (
        S.Conv2D(8, 3, strides=2, padding="valid", activation="elu", use_bias=False),
        S.MaxPooling2D(3, strides=2, padding="same"),
        S.AveragePooling2D(2),
        S.BatchNormalization(momentum=0.9),
        S.LayerNormalization(),
        S.Dense(6, activation="gelu"),
        S.Dropout(0.3),
        S.Flatten(),
        S.Dense(12, activation="sigmoid", use_bias=False),
    )),
    S.ModelSpec("all-b", (S.Conv2D(4, 5, padding="valid", activation="linear"), S.AveragePooling2D(3),
                          S.GlobalAveragePooling2D())),
    S.ModelSpec("all-c", (S.Conv2D(4, 3, strides=3), S.MaxPooling2D(2, strides=1), S.GlobalMaxPooling2D()),
                input_shape=(24, 20, 1), num_classes=2),
    S.ModelSpec("all-d", (S.PatchWhitening(3), S.Activation("gelu"),
                          S.Conv2D(6, 3, activation="linear", kernel_initializer="dirac"),
                          S.BatchNormalization(epsilon=1e-5, scale=False), S.GlobalAveragePooling2D()),
                logit_scale=0.5),
]


_BUILT = {}


def built(spec):
    from cifar_core.builder import build_model

    key = spec_io.to_json(spec)
    if key not in _BUILT:
        _BUILT[key] = build_model(spec)
    return _BUILT[key]


# Real-browser tests: Debian's Chromium driven by Playwright (no browser download), started with the flags this
# machine's closed network needs.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def needs_chromium():
    import pytest

    return pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed "
                              "(.ci/run installs it)")


def selectbox(at, label: str):
    """The one selectbox with this label in an AppTest (for boxes whose key carries a digest, ui.run_select)."""
    [box] = [s for s in at.selectbox if s.label == label]
    return box


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
