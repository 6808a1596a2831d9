"""cifar_core.data: choosing a source (the keras source when the download fails, the default and its fallback to the
sample), the validation hold-out and the limit, test/val splits, the embedded sample. The file formats themselves are
tested in test_readers.py."""

import numpy as np
import pytest
from helpers import identify, make_folder, official_batches

from cifar_core import data

# ---------------------------------------------------------------------------------------------------------------
# the validation hold-out and the limit


def test_limit_keeps_validation_whole(tmp_path, decode_cache):
    root = make_folder(tmp_path / "images")
    ds = data.load_data(str(root), limit=5)
    assert len(ds.x_train) == 5 and len(ds.x_val) == 3 and len(ds.x_test) == 6


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


def test_test_split_falls_back_to_val_and_never_to_train(tmp_path, decode_cache):
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


def test_a_source_is_checked_without_loading_it(monkeypatch, tmp_path):
    monkeypatch.delenv("CIFAR10_DATA", raising=False)
    assert data.check_source("sample") == "sample" and data.check_source(str(tmp_path)) == str(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(data.DataError, match="'.*notes.txt' is neither a cifar-10-batches-py folder"):
        data.check_source(str(tmp_path / "notes.txt"))
    with pytest.raises(data.DataError, match=f"The data source '{tmp_path}/gone' does not exist; give"):
        data.check_source(str(tmp_path / "gone"))
    monkeypatch.setenv("CIFAR10_DATA", str(tmp_path / "gone"))  # named nowhere: the message says where it came from
    for check in (data.check_source, data.load_data):
        with pytest.raises(data.DataError, match=r"'.*/gone' \(set by CIFAR10_DATA\) does not exist"):
            check()
    monkeypatch.setattr(data, "keras_downloaded", lambda: None)
    monkeypatch.setattr(data, "can_download", lambda: False)
    with pytest.raises(data.DataError, match=r"could not be downloaded \(no network connection\)"):
        data.check_source("keras")
    monkeypatch.setattr(data, "can_download", lambda: True)
    assert data.check_source("keras") == "keras"  # downloaded when it is loaded


def test_a_sources_version_follows_its_files_and_a_folders_count_is_known_without_decoding(tmp_path):
    root = make_folder(tmp_path / "pets")  # 3 classes of 10 training images
    first = data.source_version(str(root))
    assert data.source_version(str(root)) == first and data.source_version("sample") == "sample"
    # 30 images, the last 10% (3) held out; a Limit above the count had been taken as the count
    assert data.train_images_hint(str(root)) == 27 and data.train_images_hint(str(root), limit=50_000) == 27
    (root / "train" / "cat" / "extra.png").write_bytes((root / "train" / "cat" / "img00.png").read_bytes())
    assert data.source_version(str(root)) != first  # an image added: the pages evaluate again
    assert data.train_images_hint(str(root)) == 31 - 3
    missing = data.source_version(str(tmp_path / "later"))  # no folder yet: a version all the same, no error
    make_folder(tmp_path / "later")
    assert data.source_version(str(tmp_path / "later")) != missing
    # through a link, as a data root may offer a dataset: the linked folder's changes count
    (tmp_path / "link").symlink_to(root)
    linked = data.source_version(str(tmp_path / "link"))
    (root / "train" / "dog" / "extra.png").write_bytes((root / "train" / "dog" / "img00.png").read_bytes())
    assert data.source_version(str(tmp_path / "link")) != linked
