"""Fixtures of the AppTest suite (tests/test_app_*.py): a private runs folder and sample data for every app test,
and the session's one trained tiny model (helpers.tiny_run)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import helpers
import pytest

ROOT = helpers.ROOT

# No standby processes (jobs.warm_up) from the page tests: each would import TensorFlow and then wait minutes.
# test_jobs.py and the browser test turn them on where they test them.
os.environ["CIFAR_CORE_STANDBY"] = "0"

TINY_RUN_ID = "20260101-000000-tiny"
FLAT_RUN_ID = "20260101-000001-flat"


@pytest.fixture(autouse=True)
def _navigation_mode(monkeypatch):
    """AppTest forgets on every run that app.py calls st.navigation and re-detects the pages/ folder, so from the
    second run on it would run the page script alone, in Streamlit's legacy multipage mode. A real server detects
    the folder once per process and leaves that mode at the first st.navigation; make AppTest do the same."""
    from streamlit.runtime import pages_manager

    init = pages_manager.PagesManager.__init__

    def navigation_only(self, *args, **kwargs):
        init(self, *args, **kwargs)
        pages_manager.PagesManager.uses_pages_directory = False

    monkeypatch.setattr(pages_manager.PagesManager, "__init__", navigation_only)


@pytest.fixture(scope="session")
def trained_runs() -> Path:
    """A runs folder with one finished run, TINY_RUN_ID: the test session's one trained model (helpers.tiny_run).
    Read-only: tests copy the run into their own runs folder (`runs_with_model`)."""
    return helpers.tiny_run().parent


@pytest.fixture
def decode_cache(tmp_path, monkeypatch) -> Path:
    """A fresh folder for the decoded image folders' cache (CIFAR_CORE_CACHE), so that no test reads another's."""
    path = tmp_path / "cache"
    monkeypatch.setenv("CIFAR_CORE_CACHE", str(path))
    return path


@pytest.fixture
def app_env(monkeypatch, tmp_path) -> Path:
    """An empty runs folder (CIFAR_RUNS_DIR) and the embedded sample as the default data (CIFAR10_DATA)."""
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    monkeypatch.setenv("CIFAR_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("CIFAR10_DATA", "sample")
    monkeypatch.chdir(ROOT)
    return runs_dir


@pytest.fixture
def runs_with_model(app_env, trained_runs) -> Path:
    """app_env's runs folder holding a copy of the trained tiny run (modification times kept, so its stored
    evaluation still matches its model)."""
    shutil.copytree(trained_runs / TINY_RUN_ID, app_env / TINY_RUN_ID)
    return app_env


@pytest.fixture
def without_default_model(monkeypatch, tmp_path):
    """An installation without the shipped default model (cifar_core/assets/default), as a page sees it."""
    from cifar_core import models

    monkeypatch.setattr(models, "DEFAULT_RUN", tmp_path / "no-default-model")


@pytest.fixture
def flat_run(app_env) -> Path:
    """app_env's runs folder holding a model without any convolution (Flatten, Dense), saved untrained: enough for a
    page that shows what a model makes of an image."""
    import keras

    from cifar_core import runs, spec_io
    from cifar_core import spec as S
    from cifar_core.builder import build_model

    run_dir = app_env / FLAT_RUN_ID
    run_dir.mkdir()
    policy = keras.mixed_precision.global_policy().name
    try:
        keras.mixed_precision.set_global_policy("float32")
        spec = S.ModelSpec("flat", (S.Flatten(), S.Dense(8)))
        build_model(spec).save(run_dir / "model.keras")
    finally:
        keras.mixed_precision.set_global_policy(policy)
    runs.write_json(run_dir / "config.json", {"spec": spec_io.to_dict(spec), "train": {}})
    runs.write_status(run_dir, state="finished")
    return app_env


@pytest.fixture
def open_app(app_env):
    """open_app(page=None, **session_state): an AppTest of app.py (navigation and sidebar included), run once, given
    session_state, then switched to `page` ("pages/build.py") and run again. Page scripts may take a while under a
    loaded CPU, hence the generous timeout."""
    from streamlit.testing.v1 import AppTest

    def open_(page: str | None = None, timeout: float = 90, **session_state):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
        for key, value in session_state.items():
            at.session_state[key] = value
        at.run()
        assert not at.exception, at.exception
        if page:
            at.switch_page(page).run()
            assert not at.exception, at.exception
        return at

    return open_
