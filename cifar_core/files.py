"""Files the project writes and reads: atomic writes, bounded JSON, regular files read without following a link,
and a full disk as one sentence (the locks on them are locks.py's).

Every file the engine writes goes through write_atomic: a crash or a full disk at any instant leaves the previous
version whole. Every JSON file it reads goes through parse_json/read_json, which refuse what a torn, hostile or
mistaken file can hold (duplicate keys, deep nesting, huge numbers, huge files) with a sentence instead of a
traceback.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import uuid
from pathlib import Path

import numpy as np

MAX_JSON_BYTES = 4 * 2**20  # config, status and spec files are a few kB; a spec of 200 layers is about 30 kB
MAX_JSON_DEPTH = 32
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class DiskFullError(OSError):
    """No space left on the device while writing a file; what was written before is kept. Still an OSError (errno
    ENOSPC), whose message is a sentence for the user rather than "[Errno 28] ..."."""

    def __init__(self, path):
        super().__init__(errno.ENOSPC, f"The disk is full: {Path(path).name} could not be written; what was saved "
                         "before is kept. Free some disk space, then try again.")

    def __str__(self):
        return self.strerror


class JSONFileError(ValueError):
    """A JSON text that cannot be used; the message is a sentence naming what is wrong."""


def is_disk_full(error: BaseException | None) -> bool:
    """Whether an error, or one it was raised from (Keras and h5py wrap some), is a full disk or quota."""
    for _ in range(10):
        if error is None:
            return False
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(error):  # HDF5 reports it inside a RuntimeError's text
            return True
        error = error.__cause__ or error.__context__
    return False


def temporary_name(path: Path, suffix: str = ".tmp") -> Path:
    """A hidden name beside path, unique to this writer (process and call), so that concurrent writers of one file
    never share a temporary file; suffix ".tmp.keras" or ".tmp.npz" for writers that insist on their extension.
    clear_leftovers recognises it."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


def user_path(text: str | os.PathLike) -> Path:
    """Path(text) with a leading ~ or ~user made that home folder; as written when there is no such user or home
    (Path.expanduser raised RuntimeError: "~nosuchuser/cifar" as --data, or a run's data, was a traceback)."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        return Path(text)


def resolved(path: str | os.PathLike) -> Path:
    """user_path(path) with its links resolved, or made absolute as written when they cannot be: Path.resolve raised
    RuntimeError on a loop of links (a run's data source made one took the Train page down, the sixth attack)."""
    path = user_path(path)
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):
        return Path(os.path.abspath(path))


def open_for_append(path: str | os.PathLike, readable: bool = False) -> int:
    """A file descriptor for appending to path, made if missing, never through a symbolic link and only to a regular
    file: an OSError naming the file otherwise. A run folder is anybody's to edit, and a job.log or stop file made a
    link to ~/.bashrc had the job's whole output appended there (the fourth attack, 2026-12-07)."""
    if not _NOFOLLOW and os.path.islink(path):  # Windows: no O_NOFOLLOW, so ask first
        raise OSError(errno.ELOOP, f"{Path(path).name} is a symbolic link; it is not written through")
    flags = (os.O_RDWR if readable else os.O_WRONLY) | os.O_CREAT | os.O_APPEND | _NOFOLLOW \
        | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, f"{Path(path).name} is a symbolic link; it is not written through") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"{Path(path).name} is not a regular file; it is not written to")
    return fd


def touch(path: str | os.PathLike) -> None:
    """Makes path an empty file if it is missing (open_for_append's checks: no link, a regular file only)."""
    os.close(open_for_append(path))


def write_atomic(path: str | os.PathLike, data: bytes | str = b"", *, write=None, suffix: str = ".tmp") -> None:
    """Writes data (or, with write=callable(tmp_path), whatever that writes) to a temporary file, fsyncs it and
    renames it over path. A full disk raises DiskFullError; the temporary file never stays behind."""
    path = Path(path)
    if not path.is_symlink() and path.exists() and not path.is_file():
        # Renamed over, a device (--out /dev/null, run as root) or a pipe would become a plain file.
        raise OSError(errno.EEXIST, "it is not a regular file, so nothing was written over it", str(path))
    tmp = temporary_name(path, suffix)
    try:
        if write is None:
            with open(tmp, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
        else:
            write(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        _unlink_quietly(tmp)
        if is_disk_full(e) and not isinstance(e, DiskFullError):
            raise DiskFullError(path) from e
        raise


def clear_leftovers(folder: str | os.PathLike) -> list[str]:
    """Removes the temporary files that a killed writer left in folder (hidden, ending in .tmp or .tmp.keras);
    returns their names."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(".") and entry.name.endswith((".tmp", ".tmp.keras", ".tmp.npz")):
            _unlink_quietly(Path(entry.path))
            removed.append(entry.name)
    return removed


def remove_empty_dir(path: str | os.PathLike) -> None:
    """Removes a folder if it is still empty (a run folder claimed for a run that was then refused), else leaves
    it as it is."""
    try:
        Path(path).rmdir()
    except OSError:
        pass


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def clean_floats(value):
    """NaN and infinities become null: JSON has no spelling for them, and charts show a gap there."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_floats(v) for v in value]
    return value


def dumps(data, indent: int | None = 1) -> str:
    return json.dumps(clean_floats(data), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike, data) -> None:
    write_atomic(path, dumps(data))


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise JSONFileError(f"the key {key!r} appears twice in one object.")
        seen[key] = value
    return seen


def _no_constants(name):
    raise JSONFileError(f"{name} is not a JSON number.")


def is_text(value: str) -> bool:
    """Whether a string can be written as UTF-8: a lone surrogate, from a JSON escape ("\\ud800") or from a file
    name that is not UTF-8 (Python reads b"\\xff" as "\\udcff"), cannot, and one in a page's text, a table or a
    JSON file broke them (UnicodeEncodeError)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(text) -> str:
    """Text as it can be shown and written: what is_text refuses keeps its bytes as escapes (\\udcff)."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")


def _all_text(value) -> bool:
    if isinstance(value, str):
        return is_text(value)
    if isinstance(value, dict):
        return all(is_text(k) and _all_text(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_all_text(v) for v in value)
    return True


# A string, or an unterminated one to the end of the text: one linear pass (the form that had to find a closing
# quote retried from every later quote, 15 s for 64 kB of escaped quotes)
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\Z)', re.DOTALL)


def _deepest(text: str) -> int:
    """The deepest nesting of brackets outside strings: the strings cut out by a regular expression and the
    brackets summed by NumPy, both in C. A loop over every character in Python had taken 0.75 s for a 4 MB file,
    and the Runs page read dozens of such files."""
    structure = np.frombuffer(_JSON_STRING.sub("", text).encode("utf-8", "surrogatepass"), dtype=np.uint8)
    steps = (structure == ord("[")).astype(np.int32) + (structure == ord("{")) \
        - (structure == ord("]")) - (structure == ord("}"))
    return int(np.cumsum(steps).max(initial=0))


def parse_json(text: str | bytes, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH):
    """Strict, bounded JSON: at most max_bytes, max_depth levels of nesting, no duplicate keys, no NaN, numbers of
    at most 100 digits. Raises JSONFileError with a sentence."""
    if len(text) > max_bytes:
        raise JSONFileError(f"the file is {len(text):,} bytes; the limit is {max_bytes:,}.")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")  # Windows editors begin a UTF-8 file with a byte-order mark
        except UnicodeDecodeError:
            raise JSONFileError("the file is not UTF-8 text.") from None
    if _deepest(text) > max_depth:  # before json recurses into it
        raise JSONFileError(f"it nests more than {max_depth} levels deep.")

    def bounded_int(digits):
        if len(digits.lstrip("-")) > 100:
            raise JSONFileError("it holds a number of more than 100 digits.")
        return int(digits)

    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants,
                          parse_int=bounded_int)
    except JSONFileError:
        raise
    except (ValueError, RecursionError) as e:
        raise JSONFileError(f"it is not valid JSON ({e}).") from None
    if not _all_text(data):
        raise JSONFileError("it holds a lone surrogate escape (such as \\ud800), which is no character.")
    return data


def open_regular(path: str | os.PathLike, *, follow_links: bool = False):
    """path opened for reading in binary, if it is a regular file: a named pipe, a device or a folder in its place
    raises OSError at once, where open() would wait for a writer forever or read without end. Every reader of a file
    that a run, a cache or a user may have put there opens it so.

    A link as the path's last part is refused (OSError ELOOP) unless follow_links: the engine writes its own files
    by renaming (write_atomic), never as links, so a link among them was put there by someone else, and following it
    had the Runs page serve /etc/passwd as a run's model.keras (the sixth attack). A path a user gives (--spec, an
    image, a dataset) is read with follow_links=True."""
    if not follow_links and not _NOFOLLOW and os.path.islink(path):  # Windows: no O_NOFOLLOW, so ask first
        raise OSError(errno.ELOOP, f"{Path(path).name} is a link")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | (0 if follow_links else _NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP and not follow_links:
            raise OSError(errno.ELOOP, f"{Path(path).name} is a link, which is not followed") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, f"{Path(path).name} is a folder, not a regular file")
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"{Path(path).name} is not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def is_regular(path: str | os.PathLike) -> bool:
    """Whether path is a regular file itself, not a link to one: what open_regular reads without follow_links."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except (OSError, ValueError):
        return False


def read_bytes(path: str | os.PathLike, max_bytes: int, *, follow_links: bool = False) -> bytes:
    """A regular file's bytes (open_regular), at most max_bytes: a larger one, even one that grows while it is
    read, raises OSError (EFBIG) naming the limit."""
    with open_regular(path, follow_links=follow_links) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise OSError(errno.EFBIG, f"{Path(path).name} is larger than {max_bytes:,} bytes")
    return data


def read_tail(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The last max_bytes of a regular file (open_regular): what a page shows of a log that may have grown long."""
    with open_regular(path) as f:
        f.seek(max(0, os.fstat(f.fileno()).st_size - max_bytes))
        return f.read(max_bytes)


def read_json(path: str | os.PathLike, default=None, *, max_bytes: int = MAX_JSON_BYTES):
    """A JSON file's content, or default when it is missing, unreadable, not a regular file, too large or not
    valid JSON: the readers of run files treat all of those alike."""
    try:
        return parse_json(read_bytes(path, max_bytes), max_bytes=max_bytes)
    except (OSError, JSONFileError):
        return default


def remove_tree(root: Path) -> None:
    """shutil.rmtree without recursion: files and links removed as found (a link to a folder is not followed), then
    the folders deepest first."""
    folders, pending = [], [str(root)]
    while pending:
        folder = pending.pop()
        folders.append(folder)
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                else:
                    os.unlink(entry.path)
    for folder in reversed(folders):
        os.rmdir(folder)
