"""Locks and processes: which process holds a run, a standby or the start of a job, and whether a process runs.

Locks come from `filelock`: flock on POSIX, LockFileEx on Windows, freed by the kernel when the holder dies, however
it dies; a lock file is checked by files.touch first, which refuses a link or a non-regular file.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import filelock

from .files import touch


def process_alive(pid: int) -> bool:
    """Whether a process of this pid runs. Not by os.kill(pid, 0) on Windows, where any signal but Ctrl-C and
    Ctrl-Break is TerminateProcess: asking whether the server or a sweep worker was alive killed it."""
    if os.name == "nt":
        import ctypes

        kernel = ctypes.windll.kernel32
        handle = kernel.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        try:
            code = ctypes.c_ulong()
            return bool(kernel.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259  # STILL_ACTIVE
        finally:
            kernel.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except (OSError, OverflowError):
        return False
    return True


def _lock(path: str | os.PathLike, timeout: float = 0):
    """filelock's lock on path, an existing file checked first by touch: filelock 3 (which requirements allow) opens
    it with O_TRUNC, following a link, so a run's lock file made a link to another file would have emptied it."""
    if os.path.lexists(path):  # a missing file is filelock's to make (its portable lock is the file's existence)
        touch(path)  # refuses a link or a non-regular file
    return filelock.FileLock(str(path), timeout=timeout, thread_local=False)


def try_lock(path: str | os.PathLike):
    """The lock on path held by this process, or None when another process (or another lock object of this one)
    holds it. Release it with .release(). OSError when the lock file cannot be opened (a folder in its place, a
    read-only copy of a run)."""
    lock = _lock(path)
    try:
        lock.acquire()
    except filelock.Timeout:
        return None
    return lock


def is_locked(path: str | os.PathLike) -> bool:
    """Whether some process holds the lock on path (a missing file is no lock, and so is one that cannot be opened:
    no job can hold it either)."""
    if not Path(path).exists():
        return False
    try:
        lock = try_lock(path)
    except OSError:
        return False
    if lock is None:
        return True
    lock.release()
    return False


def wait_lock(path: str | os.PathLike, timeout: float = 120.0):
    """The lock on path, waiting for it up to `timeout` seconds (for short critical sections), then OSError: a
    holder that hangs, or a folder where the lock file can never be made (filelock retries a missing parent, as
    under /proc, without end), is a sentence instead of a wait forever."""
    lock = _lock(path, timeout)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise OSError(errno.ETIMEDOUT, f"the lock {Path(path).name} was not free within {timeout:g} s") from None
    return lock
