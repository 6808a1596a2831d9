"""cifar_core.sources: what the web app offers as data sources, and how a page names one without a server path (the
confinement to the data roots is tests/test_safety.py::test_27)."""

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
