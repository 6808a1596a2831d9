"""The data sources the web app offers, and how a page names one: keras, sample, and the datasets that lie directly
in the data roots set by whoever runs the server. Nothing else is opened from a page, and no sentence here names a
server path; the command line takes any path (its user is the machine's own).
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

from . import data, files, runs


def source_status(source: str | None = None) -> tuple[bool, str]:
    """(available without a download or a missing path, one sentence saying so) for a data source, without loading
    it. The sentence names no server path."""
    source = source or data.default_source()
    if source == "sample":
        counts = data.sample_counts()
        return True, (f"The embedded sample ({counts['train']:,} training and {counts['test']:,} test CIFAR-10 "
                      "images) is always available.")
    if source == "keras":
        if data.keras_downloaded():
            return True, "CIFAR-10 is available (downloaded by Keras)."
        if data.can_download():
            return False, ("CIFAR-10 has not been downloaded yet: the first training or evaluation downloads it "
                           "(about 170 MB) through keras.datasets.")
        return False, "CIFAR-10 has not been downloaded, and it cannot be downloaded here (no network)."
    if files.user_path(source).exists():
        return True, f"The data source {Path(source).name} exists."
    return False, f"The data source {Path(source).name} does not exist."


def data_roots() -> list[Path]:
    """The folders whose datasets the web app may open, set by whoever runs the server: CIFAR_DATA_ROOTS
    (os.pathsep-separated), by default ./data. The CLI takes any path; only the app is confined to these."""
    raw = os.environ.get("CIFAR_DATA_ROOTS")
    parts = raw.split(os.pathsep) if raw is not None else ["data"]
    return [files.resolved(p) for p in parts if p.strip()]


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a loop of symbolic links
        return False


# Entries looked at in a data root, and in a folder of it for a class folder: a flat folder of 300,000 files in a
# root was scanned whole, ten times a page run, and made every page slow.
MAX_ROOT_ENTRIES = 1_000


def _looks_like_dataset(path: Path) -> bool:
    try:
        if path.is_file():
            return path.name.endswith((".tar.gz", ".tgz"))
        if not path.is_dir():
            return False
        if (path / "train").is_dir() or (path / "data_batch_1").is_file():
            return True
        with os.scandir(path) as entries:
            return any(e.is_dir() and not e.name.startswith(".")
                       for e in itertools.islice(entries, MAX_ROOT_ENTRIES))
    except OSError:
        return False


def _root_sources() -> dict[str, Path]:
    """{choice: path} of the datasets in the data roots: a root that is a dataset itself, and each folder or
    archive directly inside a root, named 'root/entry'. Anything resolving outside its root is left out."""
    found = {}
    for root in data_roots():
        if not root.is_dir() or not files.is_text(str(root)):
            continue
        if (root / "train").is_dir() or (root / "data_batch_1").is_file():
            _offer(found, root.name, root)
            continue
        try:
            with os.scandir(root) as listing:
                entries = sorted(itertools.islice(listing, MAX_ROOT_ENTRIES), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            path = Path(entry.path)
            # A name that is not UTF-8 cannot be shown in the sidebar's list (it took every page down).
            if not entry.name.startswith(".") and files.is_text(entry.name) and _inside(path, root) \
                    and _looks_like_dataset(path):
                _offer(found, f"{root.name}/{entry.name}", path)
    return found


def _offer(found: dict, choice: str, path: Path) -> None:
    """Adds path under a choice no other source has: 'keras' and 'sample' are the app's own (a data root named
    sample had taken that choice, and loaded the embedded sample instead of itself), and two roots may share a
    name (the second one's datasets had gone unoffered). A path offered already is not offered twice."""
    if path in found.values():
        return
    unique, n = choice, 2
    while unique in found or unique in ("keras", "sample"):
        unique, n = f"{choice} ({n})", n + 1
    found[unique] = path


def app_sources() -> dict[str, str]:
    """{choice: label} of every data source the web app offers, in the order to show them."""
    options = {}
    if data.keras_downloaded():
        options["keras"] = "CIFAR-10 (downloaded)"
    elif data.can_download():
        options["keras"] = "CIFAR-10 (downloads about 170 MB on first use)"
    # short enough for the sidebar's box; the Home page gives its splits
    options["sample"] = "embedded sample"
    options.update({choice: f"folder {choice}" for choice in _root_sources()})
    return options


def app_source(choice: str) -> str:
    """The source load_data takes for one of app_sources(); anything else is refused with a sentence that repeats
    no path."""
    if choice in ("keras", "sample"):
        return choice
    path = _root_sources().get(choice)
    if path is None or not any(_inside(path, root) for root in data_roots()):
        raise data.DataError("That data source is not offered by this server; choose CIFAR-10, the sample or a dataset "
                        "in the server's data folders.")
    return str(path)


def offered(source: str) -> bool:
    """Whether a run's stored data source (config.json's train.data: "", keras, sample or a dataset's path) is one
    the web app offers now: what a page checks before it resumes or starts a run it did not make just now, which a
    command line, an older setting of the data roots or a hand may have pointed anywhere."""
    if source in ("", "keras", "sample"):
        return True
    try:
        path = files.user_path(source).resolve()
        return any(path == p.resolve() and any(_inside(p, root) for root in data_roots())
                   for p in _root_sources().values())
    except (OSError, RuntimeError, ValueError):
        return False


def app_default() -> str:
    """The web app's first data source: the default source when the app offers it, else the sample."""
    source = data.default_source()
    if source in app_sources():
        return source
    by_path = {str(p): c for c, p in _root_sources().items()}
    return by_path.get(str(files.resolved(source)), "sample")


def app_label(source: str) -> str:
    """A data source as a page may name it: its app choice, or the last part of a path (never a whole path)."""
    if source in ("keras", "sample"):
        return {"keras": "CIFAR-10", "sample": "the embedded sample"}[source]
    by_path = {str(p): c for c, p in _root_sources().items()}
    return by_path.get(str(files.resolved(source)), Path(source).name)


def without_server_paths(text: str) -> str:
    """Text a job wrote (its log, its error) as a page may show it, without the server's folders: a path inside the
    runs folder, a data root or the working folder loses that folder (a run's folder reads as its id, a dataset in
    a root as its name, as the pages name them), the folder itself reads as its name, and the home folder
    reads '~'. A job's log had ended on its run folder's full path. Only whole paths match (not
    /tmp inside /var/tmp), and a filesystem root is no prefix."""
    names = {folder: folder.name for folder in (runs.default_runs_dir(), *data_roots(), Path.cwd())}
    shown = {str(form): name for folder, name in names.items() for form in (folder, files.resolved(folder))
             if form.is_absolute() and form.parent != form}
    home = Path.home()
    if home.parent != home:
        shown[str(home)] = "~"
    for prefix in sorted(shown, key=len, reverse=True):  # the longest first: a root inside the working folder
        inside = "" if shown[prefix] != "~" else "~/"
        text = re.sub(_START + re.escape(prefix) + r"(?:(" + _SEP + r")|(?![\w\-]|" + _SEP + r"))",
                      lambda m, p=prefix, i=inside: i if m.group(1) else shown[p], text)
    return text


_START = r"(?<![\w./~-])"  # a path begins here: not inside a word, a URL or another path
_SEP = "[/" + re.escape(os.sep) + "]"  # a backslash separates only on Windows
