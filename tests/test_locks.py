"""cifar_core.locks: a lock is exclusive, released, timed out in a sentence, freed by the kernel when its holder is
killed, on flock and on filelock's portable fallback; whether a process runs, asked without signalling it."""

import os
import subprocess
import sys

import filelock
import pytest

from cifar_core import locks


@pytest.fixture(params=["native", "soft"])
def lock_backend(request, monkeypatch):
    """The locks as on Linux and macOS (flock) and as filelock's portable fallback without fcntl."""
    if request.param == "soft":
        monkeypatch.setattr(locks.filelock, "FileLock", filelock.SoftFileLock)
    return request.param


def test_lock_is_exclusive_and_released(tmp_path, lock_backend):
    path = tmp_path / "lock"
    assert not locks.is_locked(path)
    held = locks.try_lock(path)
    assert held is not None and locks.is_locked(path) and locks.try_lock(path) is None
    with pytest.raises(OSError, match="the lock lock was not free within 0.2 s"):
        locks.wait_lock(path, timeout=0.2)
    held.release()
    assert not locks.is_locked(path)
    locks.wait_lock(path).release()


HOLD = ("import sys, time; from cifar_core import locks; lock = locks.try_lock(sys.argv[1]); "
        "print('locked' if lock else 'busy', flush=True); time.sleep(120)")


def test_the_kernel_frees_a_killed_holders_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert locks.is_locked(tmp_path / "lock")
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert not locks.is_locked(tmp_path / "lock")


def test_every_module_imports_without_fcntl():
    """As on Windows: no module of the engine needs fcntl (filelock then uses its portable backend)."""
    code = ("import sys, pkgutil, importlib; sys.modules['fcntl'] = None; import cifar_core; "
            "[importlib.import_module('cifar_core.' + m.name) for m in pkgutil.iter_modules(cifar_core.__path__) "
            " if m.name != '__main__']; import cifar_core.__main__; "
            "from cifar_core import locks; l = locks.try_lock(sys.argv[1]); assert l and locks.is_locked(sys.argv[1]); "
            "print('ok')")
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-W", "ignore", "-c", code, f"{tmp}/lock"], capture_output=True,
                              text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_process_alive_asks_without_signalling():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert locks.process_alive(os.getpid()) and not locks.process_alive(child.pid)
    assert not locks.process_alive(2**31)  # os.kill raised OverflowError
