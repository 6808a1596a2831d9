"""The README opens with the two commands a newcomer needs, and CI runs the second one exactly, then the linter."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_opening() -> str:
    """The README before its first section heading: where a newcomer looks for how to start."""
    return (ROOT / "README.md").read_text().split("\n## ", 1)[0]


def _commands() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", _readme_opening(), flags=re.S)


def _ci_lines() -> list[str]:
    return (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_starts_with_install_and_run_then_tests():
    run_app, run_tests = _commands()
    assert "\n" not in run_app and "\n" not in run_tests  # one line each, to paste as they are
    assert "pip install -r requirements.txt -e ." in run_app and run_app.endswith("streamlit run app.py")
    assert "requirements-dev.txt" in run_tests and run_tests.endswith("python -m pytest -q")


def test_ci_runs_the_readme_test_command():
    run_tests = _commands()[1]
    assert run_tests in _ci_lines()


def test_ci_lints_after_the_tests():
    lines = _ci_lines()
    assert lines.index("ruff check .") > lines.index(_commands()[1])


def test_requirements_pin_the_design_card_packages():
    names = {line.split("==")[0] for line in (ROOT / "requirements.txt").read_text().split()}
    assert {"tensorflow", "streamlit", "plotly", "numpy", "pillow"} <= names


def test_dev_requirements_install_the_package_and_the_linter():
    lines = (ROOT / "requirements-dev.txt").read_text().split()
    assert "-e" in lines and "." in lines and any(line.startswith("ruff==") for line in lines)
