"""AppTest of the landing page and the shared sidebar (app.py)."""

import pytest

pytestmark = pytest.mark.usefixtures("app_env")


def test_home_says_what_the_tool_does_and_links_the_workflow_in_order(open_app):
    from cifar_core import device as devices

    devices.device_info()  # known, as once the first page has found it
    at = open_app()
    assert at.title[0].value == "CIFAR-10 CNN Studio"
    labels = [link.label for link in at.get("page_link")]
    # two first steps for a newcomer (the seven pages alone had not said where to begin), then the pages in order
    assert at.subheader[0].value == "Start here"
    assert labels == ["Classify an image", "Train a model", "Build", "Train", "Evaluate", "Classify", "Layers", "Runs",
                      "Sweep"]
    # The sidebar: the data source in use (CIFAR10_DATA=sample here) and the device.
    assert at.sidebar.selectbox(key="data_source").value == "sample"
    assert "Device:" in at.sidebar.caption[0].value and "Number format:" in at.sidebar.caption[0].value
    assert [s.value for s in at.success] == [
        "The embedded sample (2,000 training and 1,000 test CIFAR-10 images) is always available."]
    # said once: no caption repeats it
    assert not any(c.value.startswith("Data:") or "always works" in c.value for c in at.main.caption)


def test_the_first_page_is_drawn_before_the_device_is_found(open_app, monkeypatch):
    # Finding the device imports TensorFlow (7.3 s on a server's first visit): the page is drawn first, the sidebar
    # says so, and the device is found at the end of the same run, in its own thread (a thread of its own raced
    # the next run's imports).
    from cifar_core import device as devices

    devices.device_info.cache_clear()
    at = open_app()
    assert at.title[0].value == "CIFAR-10 CNN Studio"
    assert at.sidebar.caption[0].value == "Device: being detected…"
    assert devices.device_info.cache_info().currsize == 1  # found once the page was drawn
    at.run()
    assert at.sidebar.caption[0].value.startswith("Device: CPU") and "Number format:" in at.sidebar.caption[0].value


def test_offline_the_default_is_the_sample_and_the_page_says_so(open_app, monkeypatch, tmp_path):
    from cifar_core import data

    monkeypatch.delenv("CIFAR10_DATA")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(data, "can_download", lambda: False)
    at = open_app()
    assert at.sidebar.selectbox(key="data_source").value == "sample"
    assert "keras" not in at.sidebar.selectbox(key="data_source").options  # not offered: it cannot be had
    assert "cannot be downloaded here (no network)" in at.success[0].value
    assert not any(b.key == "data_source_download" for b in at.button)  # no download offered offline
    monkeypatch.setattr(data, "can_download", lambda: True)
    at.run()
    assert at.button(key="data_source_download")  # one click to download CIFAR-10 where it can be had


def test_the_data_sources_are_the_datasets_in_the_data_roots(open_app, monkeypatch, tmp_path):
    root = tmp_path / "data"
    (root / "mine" / "train" / "cat").mkdir(parents=True)
    (root / "mine" / "train" / "dog").mkdir(parents=True)
    monkeypatch.setenv("CIFAR_DATA_ROOTS", str(root))
    at = open_app()
    picker = at.sidebar.selectbox(key="data_source")
    assert "data/mine" in picker.options[-1] and not any(str(tmp_path) in o for o in picker.options)
    picker.set_value("data/mine").run()
    page = " ".join(e.value for e in [*at.main.markdown, *at.main.caption, *at.success, *at.warning])
    assert "data/mine" in page and str(tmp_path) not in page  # named, never by its server path


def test_home_reports_whether_keras_has_downloaded_cifar10(open_app, monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    from cifar_core import data

    monkeypatch.setattr(data, "can_download", lambda: True)
    at = open_app()
    at.sidebar.selectbox(key="data_source").set_value("keras").run()
    assert "not been downloaded" in at.warning[0].value
    batches = tmp_path / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    (batches / "data_batch_1").write_bytes(b"")
    at.run()
    assert "CIFAR-10 is available" in at.success[0].value


def test_no_page_loads_tensorflow_when_imported():
    """The router, ui and the pages import nothing that loads TensorFlow or Keras at import time (cifar_core
    imports them inside functions; cifar_core.schedules imports Keras at the top, so no page may import it)."""
    import ast
    import subprocess
    import sys

    from conftest import ROOT

    files = [ROOT / "app.py", *sorted((ROOT / "ui").glob("*.py")), *sorted((ROOT / "pages").glob("*.py"))]
    modules = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                modules |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    assert not {m for m in modules if m.split(".")[0] in ("tensorflow", "keras")}
    assert "cifar_core.schedules" not in modules
    imported = sorted(m for m in modules if m == "ui"
                      or (m.startswith("ui.") and (ROOT / "ui" / f"{m[3:]}.py").exists())
                      or (m.startswith("cifar_core.") and (ROOT / "cifar_core" / f"{m[11:]}.py").exists()))
    assert "cifar_core.jobs" in imported and "ui" in imported
    check = (f"import sys; import {', '.join(imported)}; "
             "loaded = [m for m in ('tensorflow', 'keras') if m in sys.modules]; print(loaded); sys.exit(bool(loaded))")
    done = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
