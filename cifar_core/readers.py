"""The file formats a data source comes in, read into uint8 arrays: CIFAR-10's official pickles, in a folder or the
tar.gz read in place, through a restricted unpickler; image folders, decoded once into a cache.

data.py chooses the source and splits it; this module only reads files, so that each format's limits and refusals
sit beside its reader. DataError is defined here, the lowest module that raises it, and data.py imports it from here
(callers keep writing data.DataError).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np

from . import files
from .images import ImageError, read_image_file, to_input_array

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
# spec.MAX_CLASSES, restated: readers sit below spec in the import graph (tests/test_architecture.py)
MAX_CLASSES = 1000
MAX_BATCH_BYTES = 64 * 2**20  # an official batch file is 31 MB
# Files in a split's class folders, images or not: 6x CIFAR-10's training split, about 0.9 GB once decoded. A folder
# of 100,000 tiny images took 34 s to decode and 650 MB more memory; with no limit, a folder of millions would take
# the server's memory and an hour before anything was said.
MAX_FOLDER_FILES = 300_000


class DataError(RuntimeError):
    """Data that cannot be loaded; the message says in a sentence what to do."""


def name_of(error: OSError) -> str:
    return f"{Path(error.filename).name}: {error.strerror}" if error.filename and error.strerror else \
        (error.strerror or type(error).__name__)


# ---- CIFAR-10's official pickles

class _BatchUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR-10's batch files hold: dicts, lists, bytes, str and int, and NumPy's array
    reconstruction. Any other global (a __reduce__ calling os.system, say) is refused before it is looked up."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it names {module}.{name}")


def _unpickle_batch(data: bytes):
    try:
        batch = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
        x, labels = batch[b"data"], batch[b"labels"]
        # Types first, nothing converted: np.asarray of an unpickled list of references to one bytes object (a
        # small file) would copy each of them (gigabytes). An official file holds an array and a list of ints.
        # NumPy's reconstruction makes an array of any shape the file names, filled or not: pixels that were not
        # in the file (a 277-byte file naming 20,000 images, say) would only claim memory, so look at nothing else.
        if not isinstance(x, np.ndarray):
            raise ValueError("its pixels are not an array")
        if x.nbytes > len(data):
            raise ValueError("its pixels are more than the file holds")
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(x) == 0:
            raise ValueError("wrong structure")
        if not (isinstance(labels, list) and len(labels) == len(x)
                and all(type(label) is int and 0 <= label <= 9 for label in labels)):
            raise ValueError("its labels are not one class from 0 to 9 per image")
        labels = np.asarray(labels)
    except (pickle.UnpicklingError, ValueError, TypeError, KeyError, IndexError, AttributeError, EOFError,
            MemoryError, RecursionError, OverflowError) as e:
        raise DataError(f"This is not a CIFAR-10 batch file ({e}); nothing in it was run.") from None
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)


def _join_batches(read) -> tuple:
    parts = [_unpickle_batch(read(f"data_batch_{i}")) for i in range(1, 6)]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return train, _unpickle_batch(read("test_batch"))


def load_batches(path: Path):
    """((x_train, y_train), (x_test, y_test)) of a cifar-10-batches-py folder."""

    def read(name):
        return files.read_bytes(path / name, MAX_BATCH_BYTES, follow_links=True)

    try:
        return _join_batches(read)
    except OSError as e:
        raise DataError(f"The folder {path.name} is not a complete cifar-10-batches-py folder "
                        f"({name_of(e)}).") from None


MAX_ARCHIVE_MEMBERS = 64  # the official archive holds 9 (a folder, 6 batches, batches.meta, readme.html)
MAX_TAR_HEADER_BYTES = 64 * 2**10  # a long name or extended (pax) header; the official archive has none
# How far into the unpacked archive its batches may lie: the official archive unpacks to 178 MB. Every byte before a
# batch is inflated to be skipped, and a 33 MB archive whose first member was 32 GB of zeros took 78 s of CPU.
MAX_ARCHIVE_UNPACKED_BYTES = 512 * 2**20


class _BoundedTarInfo(tarfile.TarInfo):
    """A tar member whose long-name or extended header is refused above MAX_TAR_HEADER_BYTES before tarfile reads
    it whole: a 1 MB archive whose first header declared a name of 1 GB took 2 GB while it was iterated."""

    def _proc_member(self, tar):
        if self.type == tarfile.GNUTYPE_SPARSE:  # its chain of extension blocks has no bound in tarfile
            raise ValueError("it has a sparse member")
        if self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK,
                         tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE) \
                and self.size > MAX_TAR_HEADER_BYTES:
            raise ValueError(f"it has a header of {self.size:,} bytes")
        return super()._proc_member(tar)


def load_archive(path: Path):
    """((x_train, y_train), (x_test, y_test)) of cifar-10-python.tar.gz, read in place: nothing is extracted. Its
    members are read in order, at most MAX_ARCHIVE_MEMBERS of them: tarfile's getmember would first index every
    member, and a 3 MB archive of a header repeated 1.5 million times took 0.7 GB and a minute."""
    wanted = {f"cifar-10-batches-py/{name}" for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")}
    blobs = {}
    try:
        with tarfile.open(path, "r:gz", tarinfo=_BoundedTarInfo) as tar:
            for count, member in enumerate(tar, start=1):
                if member.offset_data + member.size > MAX_ARCHIVE_UNPACKED_BYTES:  # refused before it is inflated
                    raise ValueError(f"it unpacks to more than {MAX_ARCHIVE_UNPACKED_BYTES // 2**20} MB before its "
                                     "batches end")
                if member.name in wanted:
                    if not member.isfile() or member.size > MAX_BATCH_BYTES:
                        raise ValueError(f"{member.name.rsplit('/', 1)[-1]} is not a batch file")
                    blobs[member.name.rsplit("/", 1)[-1]] = tar.extractfile(member).read()
                if len(blobs) == len(wanted) or count >= MAX_ARCHIVE_MEMBERS:
                    break
        missing = sorted(n.rsplit("/", 1)[-1] for n in wanted - {f"cifar-10-batches-py/{b}" for b in blobs})
        if missing:
            raise ValueError(f"it has no {missing[0]} among its first {MAX_ARCHIVE_MEMBERS} members")
        return _join_batches(blobs.__getitem__)
    except (OSError, KeyError, ValueError, EOFError, IndexError, tarfile.TarError, zipfile.BadZipFile) as e:
        # IndexError: tarfile's own, from a truncated header chain
        reason = "it is truncated, or not a gzip-compressed tar archive" if isinstance(e, tarfile.ReadError) \
            else "it is truncated" if isinstance(e, (EOFError, IndexError)) else str(e) or type(e).__name__
        raise DataError(f"The archive {path.name} is not the official cifar-10-python.tar.gz ({reason}).") from None


# ---- image folders

def list_folder(root: Path, within: Path | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    """(class names, [(file, label)]) of root/<class>/*; a loop of symbolic links, an unreadable folder, or a link
    that leads out of `within` (the dataset's folder, by default root) is a DataError naming it."""
    inside = Path(os.path.realpath(within or root))
    if not Path(os.path.realpath(root)).is_relative_to(inside):
        raise DataError(f"The folder {root.name} is a link that leads out of the dataset; copy what it points to "
                        "into the dataset, or use the folder it leads to.")

    def stays_inside(entry) -> bool:
        # A link is followed only where it stays inside the dataset: the web app offers a folder of its data
        # roots, and a link in it to another folder would open that one too.
        if entry.is_symlink() and not Path(os.path.realpath(entry.path)).is_relative_to(inside):
            raise DataError(f"The folder {root.name} holds a link that leads out of it ("
                            f"{Path(entry.path).relative_to(root)}); copy what it points to into the folder, or "
                            "use the folder it leads to.")
        return True

    try:
        classes = sorted(d.name for d in os.scandir(root)
                         if d.is_dir() and not d.name.startswith(".") and stays_inside(d))
        unnamed = [name for name in classes if not files.is_text(name)]
        if unnamed:  # a class name is shown on every page and saved with the model
            raise DataError(f"The class folder {files.shown(unnamed[0])} in "
                            f"{root.name} is not named in UTF-8; rename it.")
        per_class, seen = [], 0
        for label, name in enumerate(classes):
            found = []
            for entry in os.scandir(root / name):
                # images count toward the limit, and every entry toward four times it (macOS leaves a ._name file
                # beside each image it copies)
                seen += 1 if entry.name.lower().endswith(IMAGE_EXTENSIONS) and not entry.name.startswith(".") \
                    else 0.25
                if seen > MAX_FOLDER_FILES:
                    raise DataError(f"The folder {root.name} holds more than {MAX_FOLDER_FILES:,} images (or four "
                                    f"times as many files) in its class folders; this tool reads at most "
                                    f"{MAX_FOLDER_FILES:,} images a split (CIFAR-10's training split has 50,000): "
                                    "use a subset of them.")
                # a hidden file is no image of the class: macOS writes ._name beside every file it copies
                if entry.name.lower().endswith(IMAGE_EXTENSIONS) and not entry.name.startswith(".") \
                        and entry.is_file() and stays_inside(entry):
                    found.append((entry.path, label))
            per_class.append(sorted(found))
    except OSError as e:
        raise DataError(f"The folder {root.name} cannot be read ({name_of(e)}); a symbolic link that points to "
                        "itself or a folder without permission can cause this.") from None
    empty = [name for name, found in zip(classes, per_class) if not found]
    if empty:
        raise DataError(f"The class folder(s) {', '.join(empty[:5])} in {root.name} hold no images "
                        f"({', '.join(IMAGE_EXTENSIONS)}).")
    # Interleave the classes (first image of each class, then the second, ...) so that the held-out tail
    # holds every class in proportion, whatever the folder's order.
    longest = max((len(c) for c in per_class), default=0)
    ordered = [c[i] for i in range(longest) for c in per_class if i < len(c)]
    return classes, ordered


def _fingerprint(listing: list[tuple[str, int]]) -> str:
    digest = hashlib.sha256()
    for path, label in listing:
        try:
            st = os.stat(path)
        except OSError as e:
            raise DataError(f"The image {Path(path).name} cannot be read ({name_of(e)}); a symbolic link that "
                            "points to itself can cause this.") from None
        digest.update(os.fsencode(path) + f"\0{label}\0{st.st_mtime_ns}\0{st.st_size}\n".encode())
    return digest.hexdigest()[:24]


def _decode_files(listing: list[tuple[str, int]], log=None) -> tuple[np.ndarray, np.ndarray]:
    from concurrent.futures import ThreadPoolExecutor

    def decode(item):
        path, _ = item
        try:
            return to_input_array(read_image_file(path))
        except ImageError as e:
            # the class folder and the file, where the file's name alone may be in every class
            raise DataError(f"The image {Path(path).parent.name}/{Path(path).name} cannot be used: {e}") from None

    images = []
    # At most 4 decoders at once: each may hold a large image's decoding (up to images.MAX_DECODED_BYTES), and one
    # per core on a 64-core server would have taken 16 GB for a folder of bombs of 6 kB each.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 2)) as pool:
        for start in range(0, len(listing), 5000):  # in slices, so that a long first decode reports progress
            images += pool.map(decode, listing[start:start + 5000], chunksize=256)
            if log and len(listing) > 5000:
                log(f"Decoding images: {len(images):,} of {len(listing):,}.")
    x = np.stack(images) if images else np.zeros((0, 32, 32, 3), np.uint8)
    return x, np.array([label for _, label in listing], dtype=np.int64)


HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _read_cache(path: Path, count: int):
    """A cached decode, or None when it is missing, torn or not what the listing says (it is then rebuilt). The
    arrays' headers are read first: a cache whose header names a larger array, or whose members are compressed
    (np.savez writes them stored), is never inflated or allocated."""
    expected = {"x.npy": (np.dtype(np.uint8), (count, 32, 32, 3)), "y.npy": (None, (count,))}
    try:
        with files.open_regular(path) as f, zipfile.ZipFile(f) as archive:
            for name, (dtype, shape) in expected.items():
                member = archive.getinfo(name)
                with archive.open(member) as stream:
                    read_header = HEADER_READERS.get(np.lib.format.read_magic(stream))
                    if read_header is None:
                        return None
                    found_shape, _, found_dtype = read_header(stream)
                    header_size = stream.tell()
                if (member.compress_type != zipfile.ZIP_STORED or found_shape != shape or found_dtype.hasobject
                        or (dtype is not None and found_dtype != dtype)
                        or member.file_size != header_size + found_dtype.itemsize * int(np.prod(shape))):
                    return None
            f.seek(0)
            with np.load(f) as saved:
                x, y = saved["x"], saved["y"]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, MemoryError):
        return None
    if x.dtype != np.uint8 or x.shape[1:] != (32, 32, 3) or len(x) != count or y.shape != (count,):
        return None
    return x, y


def _write_cache(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """Writes the decode cache; a cache folder that is read-only or full only means loading without one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # uncompressed: 150 MB for CIFAR-10, loaded in well under a second
        files.write_atomic(path, write=lambda tmp: np.savez(tmp, x=x, y=y), suffix=".tmp.npz")
    except OSError:
        pass


def _load_split_folder(folder: Path, cache: Path, classes: list[str] | None = None, log=None, within=None):
    found, listing = list_folder(folder, within)
    if classes is not None and found != classes:
        raise DataError(f"{folder.name}/ has classes {found}, but train/ has {classes}; they must match.")
    if len(found) < 2:
        raise DataError(f"{folder.name} must hold one sub-folder of images per class, at least two classes.")
    if len(found) > MAX_CLASSES:
        raise DataError(f"The folder {folder.name} has {len(found):,} class folders; this tool trains on 2 to "
                        f"{MAX_CLASSES:,} classes.")
    key = hashlib.sha256(os.fsencode(folder.resolve())).hexdigest()[:12] + "-" + _fingerprint(listing)
    cached_path = cache / f"folder-{key}.npz"
    cached = _read_cache(cached_path, len(listing))
    if cached is not None:
        return cached, found
    if log:
        log(f"Decoding {len(listing):,} images in {folder.name}/ once (later loads read the cache).")
    x, y = _decode_files(listing, log)
    _write_cache(cached_path, x, y)
    return (x, y), found


def load_folder(root: Path, cache: Path, log=None):
    """((x_train, y_train), (x_test, y_test) or None, class names) of root/train/<class>/* (or root/<class>/*) and
    root/test/<class>/*; each split is decoded once into the folder `cache`, later loads read it from there."""
    train_dir = root / "train" if (root / "train").is_dir() else root
    (x_train, y_train), classes = _load_split_folder(train_dir, cache, log=log, within=root)
    test = None
    if (root / "test").is_dir():
        test, _ = _load_split_folder(root / "test", cache, classes, log, within=root)
    return (x_train, y_train), test, classes
