"""cifar_core.data: image folders (class names, resizing, the fixed validation split, the decode cache), the official
CIFAR-10 pickles (folder and archive), the keras source when the download fails, test/val splits, the embedded
sample."""

import io
import os
import pickle
import tarfile

import helpers
import numpy as np
import pytest

from cifar_core import data

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
                    helpers.image_bytes(helpers.solid(colour(label, i, split), size), fmt, **(
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


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("CIFAR_CORE_CACHE", str(path))
    return path


def test_folder_classes_shapes_and_split(tmp_path, cache):
    root = make_folder(tmp_path / "images")
    ds = data.load_data(str(root))
    assert ds.class_names == CLASSES and ds.num_classes == 3 and ds.source == str(root)
    # 30 training files; 10% = 3 held out: the last three of the interleaved order (cat0 dog0 frog0 cat1 ...)
    assert ds.x_train.shape == (27, 32, 32, 3) and ds.x_val.shape == (3, 32, 32, 3)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    order = [(label, i) for i in range(PER_CLASS) for label in range(3)]
    assert [identify(x) for x in ds.x_train] == order[:27]
    assert ds.y_train.tolist() == [label for label, _ in order[:27]]
    assert [identify(x) for x in ds.x_val] == [(0, 9), (1, 9), (2, 9)]
    assert sorted(ds.y_val.tolist()) == [0, 1, 2]  # balanced: one per class
    assert ds.x_test.shape == (6, 32, 32, 3)
    assert [identify(x, "test") for x in ds.x_test] == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
    x, y, name = ds.split("test")
    assert name == "test" and x is ds.x_test and y.tolist() == [0, 1, 2, 0, 1, 2]


def test_folder_split_is_the_same_on_every_load(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "images")
    monkeypatch.setenv("CIFAR_CORE_CACHE", str(tmp_path / "c1"))
    first = data.load_data(str(root))
    monkeypatch.setenv("CIFAR_CORE_CACHE", str(tmp_path / "c2"))  # decoded again, from scratch
    second = data.load_data(str(root))
    for a, b in ((first.x_train, second.x_train), (first.x_val, second.x_val), (first.y_val, second.y_val)):
        np.testing.assert_array_equal(a, b)


def test_folder_without_train_subfolder(tmp_path, cache):
    root = make_folder(tmp_path / "images", with_test=False) / "train"
    ds = data.load_data(str(root))
    assert ds.class_names == CLASSES and len(ds.x_train) == 27 and ds.x_test is None


def test_limit_keeps_validation_whole(tmp_path, cache):
    root = make_folder(tmp_path / "images")
    ds = data.load_data(str(root), limit=5)
    assert len(ds.x_train) == 5 and len(ds.x_val) == 3 and len(ds.x_test) == 6


def test_resized_images_are_32x32(tmp_path, cache):
    root = tmp_path / "images"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            # left half black, right half white, 100x60: centre-cropped to 60x60, then 32x32
            image = np.zeros((60, 100, 3), np.uint8)
            image[:, 50:] = 255
            (root / name / f"{i}.png").write_bytes(helpers.image_bytes(image))
    ds = data.load_data(str(root))
    assert ds.x_train.shape[1:] == (32, 32, 3)
    image = ds.x_train[0].astype(int)
    assert image[:, :12].max() <= 5 and image[:, 20:].min() >= 250  # the edge stays in the middle


def test_cache_hit_and_invalidation(tmp_path, cache, monkeypatch):
    root = make_folder(tmp_path / "images")
    calls = []
    real = data._decode_files

    def counting(listing, log=None):
        calls.append(len(listing))
        return real(listing, log)

    monkeypatch.setattr(data, "_decode_files", counting)
    first = data.load_data(str(root))
    assert calls == [30, 6]  # train and test decoded once
    assert len(list(cache.glob("folder-*.npz"))) == 2

    def must_not_decode(listing, log=None):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(data, "_decode_files", must_not_decode)
    second = data.load_data(str(root))
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.x_test, second.x_test)
    np.testing.assert_array_equal(first.y_val, second.y_val)

    # a changed file (new mtime) invalidates the train cache only
    changed = root / "train" / "dog" / "img04.png"
    changed.write_bytes(helpers.image_bytes(helpers.solid((1, 2, 3))))
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    calls.clear()
    monkeypatch.setattr(data, "_decode_files", counting)
    third = data.load_data(str(root))
    assert calls == [30]
    index = [(label, i) for i in range(PER_CLASS) for label in range(3)].index((1, 4))
    assert third.x_train[index].reshape(-1, 3).mean(axis=0).round().tolist() == [1, 2, 3]


def test_cache_invalidated_by_mtime_alone(tmp_path, cache, monkeypatch):
    root = make_folder(tmp_path / "images", with_test=False)
    data.load_data(str(root))
    path = root / "train" / "cat" / "img00.png"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same bytes, new mtime
    calls = []
    real = data._decode_files
    monkeypatch.setattr(data, "_decode_files", lambda listing, log=None: calls.append(len(listing)) or real(listing))
    data.load_data(str(root))
    assert calls == [30]


def test_corrupt_image_names_the_file(tmp_path, cache):
    root = make_folder(tmp_path / "images", with_test=False)
    (root / "train" / "dog" / "img02.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(data.DataError, match=r"img02\.png"):
        data.load_data(str(root))


def test_folder_errors(tmp_path, cache):
    one = tmp_path / "one" / "train" / "only"
    one.mkdir(parents=True)
    (one / "a.png").write_bytes(helpers.image_bytes(helpers.solid((1, 1, 1))))
    with pytest.raises(data.DataError, match="at least two classes"):
        data.load_data(str(tmp_path / "one"))
    root = make_folder(tmp_path / "images")
    (root / "test" / "frog").rename(root / "test" / "toad")
    with pytest.raises(data.DataError, match="must match"):
        data.load_data(str(root))
    with pytest.raises(data.DataError, match="does not exist"):
        data.load_data(str(tmp_path / "nowhere"))


# ---------------------------------------------------------------------------------------------------------------
# The official pickles

BATCH = 8  # images per synthetic batch; the real ones hold 10,000


def official_batches(seed=0):
    """Five training batches and a test batch in the official format: a dict with b"data", an (N, 3072) uint8 array
    of the red, then green, then blue 32x32 planes, row by row, and b"labels", a list of ints."""
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


@pytest.fixture
def small_val(monkeypatch):
    monkeypatch.setattr(data, "CIFAR10_VAL_SIZE", 10)


def check_official(ds, images, labels):
    n_train = 5 * BATCH
    np.testing.assert_array_equal(ds.x_train, images[:n_train - 10])
    np.testing.assert_array_equal(ds.x_val, images[n_train - 10:n_train])
    np.testing.assert_array_equal(ds.x_test, images[n_train:])
    assert ds.y_train.tolist() == labels[:n_train - 10].tolist()
    assert ds.y_val.tolist() == labels[n_train - 10:n_train].tolist()
    assert ds.y_test.tolist() == labels[n_train:].tolist()
    assert ds.y_train.dtype == np.int64 and ds.x_train.dtype == np.uint8
    assert ds.class_names == data.CIFAR10_CLASSES


def test_batches_folder(tmp_path, small_val):
    images, labels, blobs = official_batches()
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, blob in blobs.items():
        (folder / name).write_bytes(blob)
    ds = data.load_data(str(folder))
    check_official(ds, images, labels)
    # a pixel's channels come from the three planes: red at [i], green at [1024 + i], blue at [2048 + i]
    raw = pickle.loads(blobs["data_batch_1"], encoding="bytes")[b"data"]
    assert ds.x_train[2, 1, 5].tolist() == [raw[2, 37], raw[2, 1024 + 37], raw[2, 2048 + 37]]


def test_archive(tmp_path, small_val):
    images, labels, blobs = official_batches(seed=1)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, blob in blobs.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    check_official(data.load_data(str(archive)), images, labels)


def test_incomplete_batches_and_bad_archive(tmp_path, small_val):
    _, _, blobs = official_batches()
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, blob in blobs.items():
        if name != "data_batch_3":
            (folder / name).write_bytes(blob)
    with pytest.raises(data.DataError, match="not a complete cifar-10-batches-py"):
        data.load_data(str(folder))
    bad = tmp_path / "cifar-10-python.tar.gz"
    bad.write_bytes(b"not a gzip file at all")
    with pytest.raises(data.DataError, match="not the official"):
        data.load_data(str(bad))


def test_too_few_training_images(tmp_path):
    _, _, blobs = official_batches()
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, blob in blobs.items():
        (folder / name).write_bytes(blob)
    with pytest.raises(data.DataError, match="only 40 training images"):  # the real hold-out is 5,000
        data.load_data(str(folder))


# ---------------------------------------------------------------------------------------------------------------
# keras source


@pytest.mark.parametrize("error", [OSError("HTTP Error 503"), Exception("URL fetch failure"), ValueError("bad gzip")])
def test_keras_download_failure_is_one_sentence(monkeypatch, error):
    import keras

    def fail():
        raise error

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", fail)
    monkeypatch.delenv("CIFAR10_DATA", raising=False)
    monkeypatch.setattr(data, "can_download", lambda: True)  # the server answers, the download still fails
    monkeypatch.setattr(data, "keras_downloaded", lambda: None)
    for source in ("keras", None):  # keras is the default when it can be downloaded
        with pytest.raises(data.DataError) as info:
            data.load_data(source)
        message = str(info.value)
        assert str(error) in message and "embedded sample" in message
        assert "--" not in message and "CIFAR10_DATA" not in message  # pages show it: no command-line flags
        assert "\n" not in message and message.endswith(".")
        assert message.count(". ") == 0, "one sentence"
        assert info.value.__cause__ is None and info.value.__suppress_context__


def test_keras_source_shapes(monkeypatch):
    import keras

    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (5_010, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, (5_010, 1))
    test = rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, (7, 1))
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", lambda: (train, test))
    ds = data.load_data("keras")
    assert len(ds.x_train) == 10 and len(ds.x_val) == 5_000 and ds.y_train.shape == (10,)
    assert ds.y_test.tolist() == test[1].reshape(-1).tolist()


def test_default_source_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CIFAR10_DATA", "/some/where")
    assert data.default_source() == "/some/where"
    assert data.resolve_default_source() == ("/some/where", None)
    monkeypatch.delenv("CIFAR10_DATA")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(data, "can_download", lambda: True)
    assert data.resolve_default_source() == ("keras", None)  # not downloaded yet, but it can be


def test_offline_and_not_downloaded_the_default_falls_back_to_the_sample(monkeypatch, tmp_path):
    monkeypatch.delenv("CIFAR10_DATA", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(data, "can_download", lambda: False)
    source, note = data.resolve_default_source()
    assert source == "sample" and note.startswith("CIFAR-10 is not downloaded and cannot be downloaded here")
    assert "--" not in note
    assert data.load_data().source == "sample"
    batches = tmp_path / "datasets" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    (batches / "data_batch_1").write_bytes(b"")
    assert data.resolve_default_source() == ("keras", None)  # downloaded before: no network needed


def test_the_network_probe_times_out_soon_and_is_asked_once(monkeypatch):
    import socket

    calls = []

    def refuse(address, timeout):
        calls.append((address, timeout))
        raise OSError("no route")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(data, "_probe", {})
    assert data.can_download() is False and data.can_download() is False
    assert len(calls) == 1 and calls[0][1] <= 2.0


def test_an_explicit_keras_source_still_fails_without_a_network(monkeypatch):
    import keras

    def offline():
        raise Exception("URL fetch failure on https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    monkeypatch.setattr(data, "can_download", lambda: False)
    with pytest.raises(data.DataError) as caught:
        data.load_data("keras")
    message = str(caught.value)
    assert message.startswith("CIFAR-10 could not be downloaded (no network connection);")
    assert "--" not in message and "Exception" not in message  # no flags, no bare exception name


# ---------------------------------------------------------------------------------------------------------------
# splits


def test_test_split_falls_back_to_val_and_never_to_train(tmp_path, cache):
    root = make_folder(tmp_path / "images", with_test=False)
    ds = data.load_data(str(root))
    x, y, name = ds.split("test")
    assert name == "val"
    assert x is ds.x_val and y is ds.y_val
    train_ids = {identify(im) for im in ds.x_train}
    assert not train_ids & {identify(im) for im in x}
    assert ds.split("val")[2] == "val" and ds.split("train")[2] == "train"
    with pytest.raises(data.DataError, match="split must be"):
        ds.split("everything")


# ---------------------------------------------------------------------------------------------------------------
# the embedded sample


def test_embedded_sample():
    assert data.SAMPLE_PATH.stat().st_size <= 5 * 1024 * 1024
    x, y, names = data.load_sample()
    assert len(x) == 3000 and x.shape[1:] == (32, 32, 3) and x.dtype == np.uint8
    assert names == data.CIFAR10_CLASSES
    assert sorted(set(y.tolist())) == list(range(10))
    assert x.std() > 20  # real pictures, not blank
    ds = data.load_data("sample")
    # 2,000 for training (its last 10% the validation split) and a test split of 1,000, 100 a class
    assert data.sample_counts() == {"total": 3000, "train": 2000, "val": 200, "test": 1000}
    assert len(ds.x_train) == 1800 and len(ds.x_val) == 200 and len(ds.x_test) == 1000
    assert np.bincount(ds.y_test).tolist() == [100] * 10
    assert ds.split("test")[2] == "test"
    test_ids = {im.tobytes() for im in ds.x_test}
    assert len(test_ids) == 1000 and not test_ids & {im.tobytes() for im in np.concatenate([ds.x_train, ds.x_val])}
    assert sorted(set(ds.y_val.tolist())) == list(range(10))
    assert data.train_images_hint("sample") == 1800
    assert len(data.load_data("sample", limit=300).x_train) == 300
