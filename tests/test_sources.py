"""cifar_core.sources: what the web app offers as data sources, and how a page names one without a server path (the
confinement to the data roots is tests/test_safety.py::test_27)."""

import os
from pathlib import Path

from cifar_core import data, sources


def test_the_sample_is_always_offered_and_keras_only_where_it_can_be_had(monkeypatch, tmp_path):
    monkeypatch.setenv("CIFAR_DATA_ROOTS", str(tmp_path))
    monkeypatch.setattr(data, "keras_downloaded", lambda: None)
    monkeypatch.setattr(data, "can_download", lambda: False)
    assert sources.app_sources() == {"sample": "embedded sample"}  # short: it fits the sidebar
    monkeypatch.setattr(data, "can_download", lambda: True)
    assert sources.app_sources()["keras"] == "CIFAR-10 (downloads about 170 MB on first use)"
    (tmp_path / "birds" / "train" / "robin").mkdir(parents=True)
    assert list(sources.app_sources()) == ["keras", "sample", f"{tmp_path.name}/birds"]


def test_a_page_names_a_source_by_its_choice_or_its_last_part(monkeypatch, tmp_path):
    monkeypatch.setenv("CIFAR_DATA_ROOTS", str(tmp_path))
    (tmp_path / "birds" / "train" / "robin").mkdir(parents=True)
    assert sources.app_label("sample") == "the embedded sample" and sources.app_label("keras") == "CIFAR-10"
    assert sources.app_label(str(tmp_path / "birds")) == f"{tmp_path.name}/birds"
    assert sources.app_label("/srv/secret/cifar") == "cifar"
    assert sources.source_status(str(tmp_path / "nothing")) == (False, "The data source nothing does not exist.")
    assert sources.source_status("sample")[0] is True
    assert "/" not in sources.source_status(str(Path(tmp_path) / "birds"))[1]
    (tmp_path / "loop").symlink_to(tmp_path / "loop")  # Path.resolve raised RuntimeError: the Train page died
    assert sources.app_label(str(tmp_path / "loop" / "x")) == "x" and sources.app_default() in sources.app_sources()


def test_a_stored_source_is_offered_only_if_the_app_offers_it_now(monkeypatch, tmp_path):
    root = tmp_path / "data"
    (root / "birds" / "train" / "robin").mkdir(parents=True)
    (tmp_path / "elsewhere" / "train" / "crow").mkdir(parents=True)
    (root / "linked").symlink_to(root / "birds")  # a dataset offered through a link that stays in the root
    monkeypatch.setenv("CIFAR_DATA_ROOTS", str(root))
    for stored in ("", "keras", "sample", sources.app_source("data/birds"), sources.app_source("data/linked")):
        assert sources.offered(stored), stored
    for stored in (str(tmp_path / "elsewhere"), "/etc", "data/birds", "\0", str(root)):
        assert not sources.offered(stored), stored
    monkeypatch.setenv("CIFAR_DATA_ROOTS", str(tmp_path / "elsewhere"))  # the roots narrowed since
    assert not sources.offered(str(root / "birds"))


def test_a_large_flat_folder_in_a_data_root_is_looked_at_only_so_far(tmp_path, monkeypatch):
    # a flat folder of 300,000 files in a root was scanned whole, ten times a page run
    monkeypatch.setenv("CIFAR_DATA_ROOTS", str(tmp_path))
    monkeypatch.setattr(sources, "MAX_ROOT_ENTRIES", 5)
    (tmp_path / "flat").mkdir()
    for i in range(50):
        (tmp_path / "flat" / f"{i}.png").write_bytes(b"")
    read = []
    scandir = sources.os.scandir

    class Counted:
        def __init__(self, path):
            self.listing = scandir(path)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.listing.close()

        def __iter__(self):
            for entry in self.listing:
                read.append(entry.name)
                yield entry

    monkeypatch.setattr(sources.os, "scandir", Counted)
    assert not [choice for choice in sources.app_sources() if choice not in ("keras", "sample")]  # no dataset
    assert 0 < len(read) <= 2 * 5  # the root's one entry, then at most 5 of the flat folder's 50


def test_a_job_log_is_shown_without_server_paths(tmp_path, monkeypatch):
    (tmp_path / "home" / "studio").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "home" / "studio")  # the server started in a folder of its user's home
    monkeypatch.setenv("CIFAR_RUNS_DIR", str(tmp_path / "srv" / "runs"))
    monkeypatch.setenv("CIFAR_DATA_ROOTS", str(tmp_path / "srv" / "datasets"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    log = (f"Training 1,800 images from {tmp_path}/srv/datasets/cifar10-jpeg\n"
           f"Keras keeps CIFAR-10 in {tmp_path}/home/.keras\n{tmp_path}/home/studio/data/mine\n"
           f"{tmp_path}/srv/runs/20261207-tiny")
    assert sources.without_server_paths(log) == ("Training 1,800 images from cifar10-jpeg\n"
                                                 "Keras keeps CIFAR-10 in ~/.keras\ndata/mine\n20261207-tiny")


def test_only_whole_paths_lose_their_server_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CIFAR_DATA_ROOTS", "/")  # a filesystem root is no prefix: it would have cut every path
    monkeypatch.setenv("HOME", "/home/al")
    monkeypatch.chdir(tmp_path)
    kept = (f"Downloading data from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz\n/var{tmp_path}/x\n"
            f"/home/alice/data\nx{tmp_path}/y")
    assert sources.without_server_paths(kept) == kept
    assert sources.without_server_paths(f"'{tmp_path}/data/a' and /home/al/.keras and /home/al") == \
        "'data/a' and ~/.keras and ~"


def test_a_server_folder_named_whole_reads_as_its_name(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CIFAR_DATA_ROOTS", str(tmp_path / "srv_cifar"))  # a root that is itself a dataset
    monkeypatch.setenv("HOME", "/home/al")
    monkeypatch.chdir(tmp_path)
    log = (f"Data: 54 training images from {tmp_path}/srv_cifar.\nNo runs yet in {tmp_path}/runs, "
           f"Keras keeps its files in /home/al. The data source '{tmp_path}/srv_cifar' does not exist; "
           f"{tmp_path}/runs\\n {tmp_path}.")
    assert sources.without_server_paths(log) == (
        "Data: 54 training images from srv_cifar.\nNo runs yet in runs, Keras keeps its files in ~. The data source "
        f"'srv_cifar' does not exist; runs\\n {tmp_path.name}.")  # a backslash separates nothing on POSIX


def test_every_dataset_in_the_roots_has_a_choice_of_its_own(monkeypatch, tmp_path):
    # a root named sample had taken the embedded sample's choice (and loaded the sample); two roots named data had
    # offered one of their two pets
    for folder in ("sample/train/cat", "a/data/pets/train/cat", "b/data/pets/train/dog"):
        (tmp_path / folder).mkdir(parents=True)
    roots = [tmp_path / "sample", tmp_path / "a" / "data", tmp_path / "b" / "data", tmp_path / "sample"]
    monkeypatch.setenv("CIFAR_DATA_ROOTS", os.pathsep.join(map(str, roots)))
    offered = sources.app_sources()
    assert offered["sample"] == "embedded sample" and sources.app_source("sample") == "sample"
    assert {c: sources.app_source(c) for c in offered if c not in ("sample", "keras")} == {
        "sample (2)": str(tmp_path / "sample"), "data/pets": str(tmp_path / "a" / "data" / "pets"),
        "data/pets (2)": str(tmp_path / "b" / "data" / "pets")}
