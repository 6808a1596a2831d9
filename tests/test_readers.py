"""cifar_core.readers, through data.load_data: image folders (class names, resizing, the interleaved order whose tail
is the validation split, the decode cache, errors naming the file), the official CIFAR-10 pickles (folder and archive).
The made-up folder and batch files are helpers.make_folder and helpers.official_batches."""

import io
import os
import pickle
import tarfile

import helpers
import numpy as np
import pytest
from helpers import BATCH, CLASSES, PER_CLASS, identify, make_folder, official_batches

from cifar_core import data, readers

# ---------------------------------------------------------------------------------------------------------------
# image folders


def test_folder_classes_shapes_and_split(tmp_path, decode_cache):
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



def test_hidden_files_beside_the_images_are_not_images_of_the_class(tmp_path, decode_cache):
    root = make_folder(tmp_path / "images")
    for name in CLASSES:  # what macOS leaves beside each file it copies: AppleDouble metadata, not a JPEG
        (root / "train" / name / "._0.jpg").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    ds = data.load_data(str(root))
    assert ds.x_train.shape == (27, 32, 32, 3) and ds.x_val.shape == (3, 32, 32, 3)


def test_folder_split_is_the_same_on_every_load(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "images")
    monkeypatch.setenv("CIFAR_CORE_CACHE", str(tmp_path / "c1"))
    first = data.load_data(str(root))
    monkeypatch.setenv("CIFAR_CORE_CACHE", str(tmp_path / "c2"))  # decoded again, from scratch
    second = data.load_data(str(root))
    for a, b in ((first.x_train, second.x_train), (first.x_val, second.x_val), (first.y_val, second.y_val)):
        np.testing.assert_array_equal(a, b)



def test_a_split_of_more_images_than_the_limit_is_refused_before_decoding(tmp_path, decode_cache, monkeypatch):
    root = make_folder(tmp_path / "images")  # train: 10 images and a text file a class; test: 2 and a text file
    monkeypatch.setattr(readers, "MAX_FOLDER_FILES", 31)
    assert len(readers.list_folder(root / "train")[1]) == 30  # 30 images and 3 other files (a quarter each): 30.75
    monkeypatch.setattr(readers, "MAX_FOLDER_FILES", 29)
    monkeypatch.setattr(readers, "_decode_files", lambda *a, **k: pytest.fail("decoded a folder over the limit"))
    with pytest.raises(data.DataError, match="^The folder train holds more than 29 images .* in its class folders; "
                                             "this tool reads at most 29 images a split"):
        data.load_data(str(root))
    for name in CLASSES:  # other files count a quarter each (macOS's ._name beside every image it copies)
        for i in range(20):
            (root / "test" / name / f"._{i}.png").write_bytes(b"")
    monkeypatch.setattr(readers, "MAX_FOLDER_FILES", 21)  # 6 images + 63 other files / 4 = 21.75
    with pytest.raises(data.DataError, match="more than 21 images"):
        readers.list_folder(root / "test")


def test_folder_without_train_subfolder(tmp_path, decode_cache):
    root = make_folder(tmp_path / "images", with_test=False) / "train"
    ds = data.load_data(str(root))
    assert ds.class_names == CLASSES and len(ds.x_train) == 27 and ds.x_test is None



def test_resized_images_are_32x32(tmp_path, decode_cache):
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



def test_cache_hit_and_invalidation(tmp_path, decode_cache, monkeypatch):
    root = make_folder(tmp_path / "images")
    calls = []
    real = readers._decode_files

    def counting(listing, log=None):
        calls.append(len(listing))
        return real(listing, log)

    monkeypatch.setattr(readers, "_decode_files", counting)
    first = data.load_data(str(root))
    assert calls == [30, 6]  # train and test decoded once
    assert len(list(decode_cache.glob("folder-*.npz"))) == 2

    def must_not_decode(listing, log=None):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(readers, "_decode_files", must_not_decode)
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
    monkeypatch.setattr(readers, "_decode_files", counting)
    third = data.load_data(str(root))
    assert calls == [30]
    index = [(label, i) for i in range(PER_CLASS) for label in range(3)].index((1, 4))
    assert third.x_train[index].reshape(-1, 3).mean(axis=0).round().tolist() == [1, 2, 3]



def test_cache_invalidated_by_mtime_alone(tmp_path, decode_cache, monkeypatch):
    root = make_folder(tmp_path / "images", with_test=False)
    data.load_data(str(root))
    path = root / "train" / "cat" / "img00.png"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same bytes, new mtime
    calls = []
    real = readers._decode_files
    monkeypatch.setattr(readers, "_decode_files", lambda listing, log=None: calls.append(len(listing)) or real(listing))
    data.load_data(str(root))
    assert calls == [30]



def test_corrupt_image_names_the_file(tmp_path, decode_cache):
    root = make_folder(tmp_path / "images", with_test=False)
    (root / "train" / "dog" / "img02.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(data.DataError, match=r"img02\.png"):
        data.load_data(str(root))



def test_folder_errors(tmp_path, decode_cache):
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
# the official pickles


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
    with pytest.raises(data.DataError, match=r"not the official cifar-10-python.tar.gz \(it is truncated, or not a "
                                             r"gzip-compressed tar archive\)"):
        data.load_data(str(bad))


def test_a_folders_class_limit_is_the_specs():
    from cifar_core import spec as specs

    assert readers.MAX_CLASSES == specs.MAX_CLASSES  # restated below spec in the import graph; one number


def test_an_archive_whose_long_name_header_is_huge_is_refused_before_it_is_read(tmp_path):
    # tarfile reads a long-name header whole while iterating: a 1 MB archive declaring a 1 GB name took 2 GB
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        header = tarfile.TarInfo("././@LongLink")
        header.type, header.size = tarfile.GNUTYPE_LONGNAME, readers.MAX_TAR_HEADER_BYTES + 1
        tar.addfile(header, io.BytesIO(b"n" * header.size))
    with pytest.raises(data.DataError, match=r"\(it has a header of 65,537 bytes\)"):
        readers.load_archive(archive)


def test_an_archive_with_a_sparse_member_is_refused(tmp_path):
    # tarfile follows a sparse member's chain of extension blocks without a bound (80,000 took 14 s)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        member = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        member.type, member.size = tarfile.GNUTYPE_SPARSE, 0
        tar.addfile(member)
    with pytest.raises(data.DataError, match=r"\(it has a sparse member\)"):
        readers.load_archive(archive)


def test_an_archive_that_unpacks_far_before_its_batches_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    # every byte before a batch is inflated to be skipped: 32 GB of zeros first in a 33 MB archive took 78 s of CPU
    monkeypatch.setattr(readers, "MAX_ARCHIVE_UNPACKED_BYTES", 2**20)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        filler = tarfile.TarInfo("cifar-10-batches-py/zeros")
        filler.size = 2**20
        tar.addfile(filler, io.BytesIO(bytes(filler.size)))
    with pytest.raises(data.DataError, match=r"\(it unpacks to more than 1 MB before its batches end\)"):
        readers.load_archive(archive)
