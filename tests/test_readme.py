"""The README opens with the two commands a newcomer needs, and CI runs the second one exactly."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands():
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_starts_with_install_and_run_then_tests():
    run_app, run_tests = _commands()[:2]
    assert "pip install -r requirements.txt" in run_app and run_app.endswith("streamlit run app.py")
    assert "requirements-dev.txt" in run_tests and run_tests.endswith("python -m pytest -q")


def test_ci_runs_the_readme_test_command():
    run_tests = _commands()[1]
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert run_tests in ci_lines


def test_requirements_pin_the_design_card_packages():
    names = {line.split("==")[0] for line in (ROOT / "requirements.txt").read_text().split()}
    assert {"tensorflow", "streamlit", "plotly", "numpy", "pillow"} <= names
